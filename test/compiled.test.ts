import { existsSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { BUNDLE_SUFFIX, compiledIsFresh, importEntry, sourceStamp, STAMP_FILE } from '../scripts/compiled.mjs';
import { arrowFiles, cliAsync, REPO, sha256, tempDir, writeSpec } from './helpers.js';
import { startRedis } from './services.js';

const { cachePath, readSource, WRAPPER } = createRequire(import.meta.url)('../scripts/cached-bundle.cjs') as {
  cachePath: (file: string) => string;
  readSource: (file: string) => string;
  WRAPPER: [string, string];
};
/** Whether the file-mapping binding is built (CI builds it: see packages/datasets/src/map-file.test.ts). */
const MAPPING = existsSync(join(REPO, 'packages', 'datasets', 'native', 'build', 'trajlab_map_file.node'));

/** A minimal workspace: one package with a source file, the compiler script, and a stamp of them. */
function fixture(): { root: string; source: string } {
  const root = tempDir('trajlab-compiled-');
  mkdirSync(join(root, 'packages', 'a', 'src'), { recursive: true });
  mkdirSync(join(root, 'services'), { recursive: true });
  mkdirSync(join(root, 'scripts'), { recursive: true });
  mkdirSync(join(root, 'node_modules'), { recursive: true });
  writeFileSync(join(root, 'packages', 'a', 'package.json'), JSON.stringify({ name: '@t/a', exports: { '.': './src/index.ts' } }));
  const source = join(root, 'packages', 'a', 'src', 'index.ts');
  writeFileSync(source, 'export const a = 1;\n');
  writeFileSync(join(root, 'packages', 'a', 'src', 'index.test.ts'), 'test\n');
  writeFileSync(join(root, 'scripts', 'build-js.mjs'), '// compiler\n');
  writeFileSync(join(root, STAMP_FILE), JSON.stringify(sourceStamp(root)));
  return { root, source };
}

describe('compiled JavaScript (pnpm install compiles the TypeScript; the command runs it while it matches)', () => {
  it('is used while the sources match their stamp, and not once one changes, is added, or TRAJLAB_COMPILED=off', () => {
    const { root, source } = fixture();
    expect(compiledIsFresh(root, {})).toBe(true);
    expect(compiledIsFresh(root, { TRAJLAB_COMPILED: 'off' })).toBe(false);
    // tests do not count: editing one keeps the compiled code
    writeFileSync(join(root, 'packages', 'a', 'src', 'index.test.ts'), 'test, edited\n');
    expect(compiledIsFresh(root, {})).toBe(true);
    // an edit of the same size, one second later
    writeFileSync(source, 'export const a = 2;\n');
    const later = new Date(Date.now() + 1000);
    utimesSync(source, later, later);
    expect(compiledIsFresh(root, {})).toBe(false);
    writeFileSync(join(root, STAMP_FILE), JSON.stringify(sourceStamp(root)));
    expect(compiledIsFresh(root, {})).toBe(true);
    writeFileSync(join(root, 'packages', 'a', 'src', 'extra.ts'), 'export {};\n');
    expect(compiledIsFresh(root, {})).toBe(false);
  });

  it('is not used without a stamp, or with a damaged one', () => {
    const { root } = fixture();
    writeFileSync(join(root, STAMP_FILE), '{not json');
    expect(compiledIsFresh(root, {})).toBe(false);
  });

  it('an entry runs from its bundle when there is one, else from its compiled module', async () => {
    const { root } = fixture();
    const dist = join(root, 'packages', 'a', 'dist');
    mkdirSync(dist, { recursive: true });
    writeFileSync(join(dist, 'index.js'), "export const from = 'module';\n");
    writeFileSync(join(dist, `index${BUNDLE_SUFFIX}`), "exports.from = 'bundle';\n");
    expect((await importEntry(root, join(root, 'packages', 'a'))).from).toBe('bundle');
    rmSync(join(dist, `index${BUNDLE_SUFFIX}`));
    expect((await importEntry(root, join(root, 'packages', 'a'))).from).toBe('module');
  });

  it("a bundle runs from V8's code cache once a first run wrote it; a cache of another build or a damaged one is not used", () => {
    const dir = tempDir('trajlab-cache-');
    const bundle = join(dir, 'x.bundle-code.cjs');
    writeFileSync(bundle, "exports.answer = require('node:path').basename(__dirname).length + 37;\nexports.f = function twice(v) { return 2 * v; };\n");
    const runner = join(REPO, 'scripts', 'cached-bundle.cjs');
    const run = (env: NodeJS.ProcessEnv = {}) => {
      const script = `const c = require(${JSON.stringify(runner)}); const m = c.runCached(${JSON.stringify(bundle)}); console.log(JSON.stringify({ value: m.f(m.answer), how: c.lastRun() }));`;
      const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
      expect(out.status, out.stderr).toBe(0);
      return JSON.parse(out.stdout) as { value: number; how: string };
    };
    const value = 2 * (basename(dir).length + 37);
    expect(run()).toEqual({ value, how: 'written' });
    const cache = cachePath(bundle);
    expect(existsSync(cache)).toBe(true);
    expect(run()).toEqual({ value, how: 'used' });
    expect(run({ TRAJLAB_CODE_CACHE: 'off' })).toEqual({ value, how: 'off' });
    // a damaged cache (cut short) is refused by V8 and written again
    writeFileSync(cache, readFileSync(cache).subarray(0, 64));
    expect(run()).toEqual({ value, how: 'written' });
    expect(run()).toEqual({ value, how: 'used' });
    // a rebuilt bundle (new size or time) never reads the old cache
    writeFileSync(bundle, `${readFileSync(bundle, 'utf8')}// rebuilt\n`);
    expect(cachePath(bundle)).not.toBe(cache);
    expect(run()).toEqual({ value, how: 'written' });
  });

  it('a bundle is read as latin1 only when it is ASCII (as esbuild writes them), else as UTF-8', () => {
    const dir = tempDir('trajlab-cache-');
    const ascii = join(dir, 'ascii.bundle-code.cjs');
    const utf8 = join(dir, 'utf8.bundle-code.cjs');
    writeFileSync(ascii, "exports.text = 'sigma \\u03c3';\n");
    writeFileSync(utf8, "exports.text = 'sigma \u03c3, caf\u00e9';\n", 'utf8');
    expect(readSource(ascii)).toBe(readFileSync(ascii, 'utf8'));
    expect(readSource(utf8)).toBe(readFileSync(utf8, 'utf8'));
    const runner = join(REPO, 'scripts', 'cached-bundle.cjs');
    for (const [file, text] of [[ascii, 'sigma \u03c3'], [utf8, 'sigma \u03c3, caf\u00e9']] as const) {
      // first run (compiled, cache written), then from the cache
      for (const how of ['written', 'used']) {
        const script = `const c = require(${JSON.stringify(runner)}); const m = c.runCached(${JSON.stringify(file)}); console.log(JSON.stringify({ text: m.text, how: c.lastRun() }));`;
        const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
        expect(out.status, out.stderr).toBe(0);
        expect(JSON.parse(out.stdout)).toEqual({ text, how });
      }
    }
  });

  it('a bundle written in its module wrapper is compiled from its mapped file, and gives the same exports read or mapped', () => {
    if (process.env.CI) expect(MAPPING).toBe(true);
    const dir = tempDir('trajlab-cache-');
    const bundle = join(dir, 'w.bundle-code.cjs');
    writeFileSync(bundle, `${WRAPPER[0]}exports.answer = 6 * 7;\nexports.where = __filename;\n${WRAPPER[1]}`);
    const runner = join(REPO, 'scripts', 'cached-bundle.cjs');
    const run = (env: NodeJS.ProcessEnv = {}) => {
      const script = `const c = require(${JSON.stringify(runner)}); const m = c.runCached(${JSON.stringify(bundle)}); console.log(JSON.stringify({ answer: m.answer, where: m.where, how: c.lastRun(), source: c.lastSource() }));`;
      const out = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
      expect(out.status, out.stderr).toBe(0);
      return JSON.parse(out.stdout) as { answer: number; where: string; how: string; source: string };
    };
    const source = MAPPING ? 'mapped' : 'read';
    expect(run()).toEqual({ answer: 42, where: bundle, how: 'written', source });
    expect(run()).toEqual({ answer: 42, where: bundle, how: 'used', source });
    expect(run({ TRAJLAB_MAP_FILES: 'off' })).toEqual({ answer: 42, where: bundle, how: 'used', source: 'read' });
    expect(run({ TRAJLAB_CODE_CACHE: 'off' })).toEqual({ answer: 42, where: bundle, how: 'off', source });
    // a bundle with other bytes than ASCII is read and decoded as UTF-8, mapping or not
    writeFileSync(bundle, `${WRAPPER[0]}exports.answer = 'caf\u00e9';\n${WRAPPER[1]}`, 'utf8');
    expect(run()).toMatchObject({ answer: 'caf\u00e9', source: 'read' });
  });

  it('the built bundles are written in their module wrapper, and the compiled command compiles its bundle from the mapped file', () => {
    if (!compiledIsFresh(REPO)) return expect(process.env.CI).toBeFalsy();
    for (const name of ['services/coordinator/dist/index.bundle-code.cjs', 'packages/runner/dist/child.bundle-code.cjs', 'services/coordinator/dist/queue-packages.bundle-code.cjs']) {
      const text = readFileSync(join(REPO, name), 'latin1');
      expect(text.startsWith(WRAPPER[0]) && text.endsWith(WRAPPER[1]), name).toBe(true);
    }
    // how the command's own bundle was loaded, printed as the process exits (the loader is the one in require.cache)
    const probe = join(tempDir('trajlab-probe-'), 'source.cjs');
    writeFileSync(probe, `process.on('exit', () => require('node:fs').writeSync(2, '\\n@@source ' + require(${JSON.stringify(join(REPO, 'scripts', 'cached-bundle.cjs'))}).lastSource() + '\\n'));\n`);
    const out = spawnSync(process.execPath, ['--require', probe, join(REPO, 'services', 'coordinator', 'bin', 'trajlab.mjs'), '--help'], { encoding: 'utf8' });
    expect(out.status, out.stderr).toBe(0);
    expect(/@@source (\S+)/.exec(out.stderr)?.[1]).toBe(MAPPING ? 'mapped' : 'read');
  });

  it('the distributed commands load bullmq and ioredis from their own bundle, not from their installed files', async () => {
    // only the compiled command has the bundle; CI always runs it (see the next test)
    if (!compiledIsFresh(REPO)) return expect(process.env.CI).toBeFalsy();
    const redis = await startRedis();
    try {
      // every module the command required, by file, printed as it exits (the bundles' own code runs from V8's code cache,
      // so only their loaders are listed)
      const probe = join(tempDir('trajlab-probe-'), 'modules.cjs');
      writeFileSync(probe, "process.on('exit', () => require('node:fs').writeSync(2, `\\n@@modules ${JSON.stringify(Object.keys(require.cache))}\\n`));\n");
      const out = spawnSync(process.execPath, ['--require', probe, join(REPO, 'services', 'coordinator', 'bin', 'trajlab.mjs'), 'status'], { encoding: 'utf8', env: { ...process.env, REDIS_URL: redis.url } });
      expect(out.status, out.stderr).toBe(0);
      expect(out.stdout).toContain('no studies submitted');
      const modules = JSON.parse(/@@modules (.*)/.exec(out.stderr)![1]!) as string[];
      expect(modules.filter((m) => /[\\/]node_modules[\\/](.*[\\/])?(bullmq|ioredis)[\\/]/.test(m))).toEqual([]);
      expect(modules.map((m) => basename(m))).toContain(`queue-packages${BUNDLE_SUFFIX}`);
    } finally {
      await redis.stop();
    }
  });

  it('pnpm install compiled every package, and the compiled command writes the same bytes as the sources through tsx', async () => {
    // CI installs from scratch, so there the compiled code must be in use: the command's and the shard processes'
    // bundles (scripts/build-js.mjs)
    if (process.env.CI) {
      expect(compiledIsFresh(REPO)).toBe(true);
      expect(existsSync(join(REPO, 'packages', 'runner', 'dist', `child${BUNDLE_SUFFIX}`))).toBe(true);
      expect(existsSync(join(REPO, 'services', 'coordinator', 'dist', `index${BUNDLE_SUFFIX}`))).toBe(true);
    }
    const dir = tempDir();
    const spec = writeSpec(dir, {
      name: 'compiled',
      seed: 5,
      samples: 12,
      shardSize: 3,
      dataset: { kind: 'gmm', dim: 4, components: 3, n: 300, seed: 2 },
      solvers: [{ solver: 'heun', steps: 5 }, { solver: 'euler', steps: 8 }],
    });
    const compiled = await cliAsync(['run', spec, '--out', join(dir, 'compiled'), '--workers', '2', '--quiet']);
    const sources = await cliAsync(['run', spec, '--out', join(dir, 'sources'), '--workers', '2', '--quiet'], { env: { ...process.env, TRAJLAB_COMPILED: 'off' } });
    for (const r of [compiled, sources]) expect(r.status, r.stderr).toBe(0);
    const id = /study\s+(\S+)/.exec(compiled.stdout)![1]!;
    const files = arrowFiles(join(dir, 'compiled', id));
    expect(files.length).toBeGreaterThan(8);
    expect(arrowFiles(join(dir, 'sources', id))).toEqual(files);
    for (const f of files) expect(sha256(readFileSync(join(dir, 'sources', id, f))), f).toBe(sha256(readFileSync(join(dir, 'compiled', id, f))));
  });
});
