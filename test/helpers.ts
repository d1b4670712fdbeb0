import { runStudyEmbedded, type RunResult } from '@trajlab/runner';
import { tableFromIPC, type Table } from 'apache-arrow';
import { openStore } from '@trajlab/storage';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A fresh temporary directory. */
export function tempDir(prefix = 'trajlab-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes a spec object as YAML into `dir` and returns its path. */
export function writeSpec(dir: string, spec: object, file = 'spec.yaml'): string {
  const path = join(dir, file);
  writeFileSync(path, stringify(spec));
  return path;
}

/** Runs a spec object through the embedded pipeline into `<dir>/out`. */
export async function runSpec(spec: object, dir = tempDir()): Promise<RunResult & { dir: string }> {
  const res = await runStudyEmbedded(writeSpec(dir, spec), { out: join(dir, 'out') });
  return { ...res, dir };
}

/** Reads an Arrow IPC file. */
export function readTable(path: string): Table {
  return tableFromIPC(readFileSync(path));
}

/** Rows of a table as plain objects (vectors as arrays). */
export function rows(t: Table): Record<string, unknown>[] {
  return t.toArray().map((r) => {
    const o = r.toJSON() as Record<string, unknown>;
    for (const [k, v] of Object.entries(o)) if (v && typeof v === 'object' && 'toArray' in v) o[k] = Array.from((v as { toArray(): ArrayLike<number> }).toArray());
    return o;
  });
}

/** Runs the real `trajlab` CLI as a child process. */
export function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { status: number; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [join(REPO, 'services/coordinator/bin/trajlab.mjs'), ...args], {
    cwd: opts.cwd ?? REPO,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    timeout: 600_000,
  });
  return { status: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
}

/**
 * Runs the CLI without blocking this process's event loop: needed when this process also hosts a server the CLI talks
 * to (the in-process S3 server of the tests).
 */
export function cliAsync(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(REPO, 'services/coordinator/bin/trajlab.mjs'), ...args], {
      cwd: opts.cwd ?? REPO,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
  });
}

/** The Arrow files under a study directory (paths relative to it), sorted. */
export function arrowFiles(studyDir: string): string[] {
  return readdirSync(studyDir, { recursive: true }).map(String).filter((f) => f.endsWith('.arrow')).sort();
}

/** sha256 hex of bytes. */
export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** sha256 hex of a file's bytes. */
export function fileSha256(path: string): string {
  return sha256(readFileSync(path));
}

/**
 * Runs `trajlab run` on the same spec into <dir>/local and checks that every Arrow object a distributed run wrote under
 * <out>/<studyId>/ is byte-identical to the local run's file. Returns the compared keys (for count assertions).
 */
export async function expectArrowFilesEqualLocalRun(specPath: string, dir: string, studyId: string, out: string, env: Record<string, string>): Promise<string[]> {
  const local = await cliAsync(['run', specPath, '--out', join(dir, 'local'), '--quiet'], { env });
  expect(local.status, local.stderr).toBe(0);
  const store = openStore(out, { ...process.env, ...env });
  const localStore = openStore(join(dir, 'local'));
  const keys = (await store.list(`${studyId}/`)).filter((k) => k.endsWith('.arrow'));
  for (const k of keys) expect(sha256(await store.get(k)), k).toBe(sha256(await localStore.get(k)));
  return keys;
}

/**
 * Runs `trajlab run` on a tiny spec with `env` added and checks that it stops as an input error (exit 2) with a message
 * matching `message`, before it writes anything.
 */
export function expectRunRefusesEnv(env: Record<string, string>, message: RegExp): void {
  const dir = tempDir();
  const spec = writeSpec(dir, { name: 'env', samples: 2, dataset: { kind: 'two-moons', n: 50 }, solvers: [{ solver: 'euler', steps: 2 }] });
  const res = cli(['run', spec, '--out', join(dir, 'out')], { env });
  expect(res.status).toBe(2);
  expect(res.stderr).toMatch(message);
  expect(existsSync(join(dir, 'out'))).toBe(false);
}
