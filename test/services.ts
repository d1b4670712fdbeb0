import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { REPO } from './helpers.js';

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export interface RedisHandle {
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a private redis-server (no persistence unless `extraArgs` say otherwise) on a free port. */
export async function startRedis(extraArgs: string[] = ['--save', '', '--appendonly', 'no'], port?: number): Promise<RedisHandle> {
  const p = port ?? (await freePort());
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--maxmemory-policy', 'noeviction', ...extraArgs], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${p}`;
  const { Redis } = await import('ioredis');
  for (let i = 0; i < 100; i++) {
    const r = new Redis(p, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on('error', () => {});
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      break;
    } catch {
      r.disconnect();
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  return {
    url,
    port: p,
    proc,
    stop: () =>
      new Promise((res) => {
        if (proc.exitCode !== null) return res();
        proc.once('exit', () => res());
        proc.kill('SIGTERM');
      }),
  };
}

export interface ServiceHandle {
  proc: ChildProcess;
  log(): string;
  /** Resolves when the process has printed `pattern`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `pnpm worker` / `pnpm aggregator` (the services' own entry points) as child processes. */
export function startService(kind: 'worker' | 'aggregator', env: Record<string, string>): ServiceHandle {
  // the services' own launchers (compiled JavaScript when fresh, else the sources through tsx), as `pnpm worker` runs them
  const proc = spawn(process.execPath, [join(REPO, `services/${kind}/bin/${kind}.mjs`)], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return {
    proc,
    log: () => out,
    waitFor: (pattern, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const t0 = Date.now();
        const tick = () => {
          if (pattern.test(out)) return resolve();
          if (proc.exitCode !== null) return reject(new Error(`${kind} exited (${proc.exitCode}) before ${pattern}: ${out}`));
          if (Date.now() - t0 > timeoutMs) return reject(new Error(`timeout waiting for ${pattern} in ${kind} output: ${out}`));
          setTimeout(tick, 100);
        };
        tick();
      }),
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill(signal);
      }),
  };
}

/** Pids of the direct children of a process. */
export function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Whether a process exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
