#!/usr/bin/env node
// Compiles every workspace package's TypeScript (src/**/*.ts, tests excluded) to JavaScript in its dist/ folder, one
// file per source file, so that the `trajlab` command and its shard processes start without the TypeScript loader
// (tsx costs ~0.3 s per process). Runs at `pnpm install` (the root `prepare` script) and writes a stamp of the
// sources it compiled; the command uses dist/ only while the sources still match that stamp (see
// scripts/compiled.mjs) and otherwise runs the sources through tsx as before, so an edited checkout never runs stale
// code. Workspace imports (@trajlab/x) are rewritten to the relative path of the package's compiled entry.
//
// The processes trajlab starts most (the `trajlab` command and its shard processes) are also bundled, each into one
// CommonJS file next to its entry (BUNDLES): loading ~300 ES modules, and running Node's export scanner over tfjs's
// 2 MB of CommonJS when an ES module imports it, costs ~0.3 s per process; one bundle loads in ~0.1 s. Each module in
// a bundle keeps its own location (import.meta.url is rewritten to the URL of its compiled file), so the paths it
// derives from it (the native binding, the shard process's entry) are the same bundled or not; each bundle runs through
// V8's code cache (scripts/cached-bundle.cjs), which halves its load again once a first run has filled it, and has its
// whitespace minified. Packages that load files of their own at run time or are loaded only for distributed runs
// (bullmq, ioredis, the AWS SDK, tfjs-node) stay outside, required from where they are installed.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLE_SUFFIX, sourceStamp, STAMP_FILE, workspacePackages } from './compiled.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const packages = workspacePackages(root);
// the compiler options tsx applies to the same files (class-field semantics follow the ES2022 target)
const { compilerOptions } = JSON.parse(readFileSync(join(root, 'tsconfig.base.json'), 'utf8'));

/** Where `@trajlab/x[/sub]` compiles to: the package's export target with src/ -> dist/ and .ts -> .js. */
function compiledTarget(name, subpath) {
  const pkg = packages.find((p) => p.name === name);
  if (!pkg) return null;
  const target = typeof pkg.exports === 'string' ? (subpath === '.' ? pkg.exports : null) : pkg.exports?.[subpath];
  if (typeof target !== 'string' || !target.startsWith('./src/')) return null;
  return join(pkg.dir, 'dist', target.slice('./src/'.length).replace(/\.ts$/, '.js'));
}

/** Compiled entries bundled (relative to the root), each to `<entry without .js>` + BUNDLE_SUFFIX. */
const BUNDLES = ['services/coordinator/dist/index.js', 'packages/runner/dist/child.js'];
/** Packages a bundle requires from their installed location instead of containing them. */
const OUTSIDE = /^(bullmq|ioredis|@aws-sdk\/[^/]+|@smithy\/[^/]+|@tensorflow\/tfjs-node(-gpu)?)$/;

/** `to` relative to directory `from`, as a relative module specifier. */
function specifier(from, to) {
  const path = relative(from, to).split(sep).join('/');
  return path.startsWith('.') ? path : `./${path}`;
}

/**
 * Bundles the compiled `entry` (see the header) with esbuild into `<name>.bundle-code.cjs`, run by `<name>` +
 * BUNDLE_SUFFIX through V8's code cache (scripts/cached-bundle.cjs); returns the latter's path.
 */
async function bundle(build, entry) {
  const loader = entry.replace(/\.js$/, BUNDLE_SUFFIX);
  const outfile = entry.replace(/\.js$/, '.bundle-code.cjs');
  const outDir = dirname(outfile);
  const compiledFile = /[\\/](packages|services)[\\/][^\\/]+[\\/]dist[\\/].*\.js$/;
  const locations = {
    name: 'trajlab-locations',
    setup(b) {
      b.onResolve({ filter: /^[@a-z]/ }, (args) => {
        if (!OUTSIDE.test(args.path)) return undefined;
        // resolved as the importing module would (each package sees its own dependencies), required from there
        const installed = createRequire(join(args.resolveDir, 'index.js')).resolve(args.path);
        return { path: specifier(outDir, installed), external: true };
      });
      b.onLoad({ filter: compiledFile }, (args) => ({
        contents: readFileSync(args.path, 'utf8')
          .replaceAll('import.meta.url', `__trajlab_module_url(${JSON.stringify(specifier(outDir, args.path))})`)
          .replaceAll('import.meta.resolve(', 'require.resolve('),
        loader: 'js',
      }));
    },
  };
  await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    // packages' ES module builds where they have one (tfjs's, flatbuffers'): esbuild links their exports directly,
    // where a CommonJS build imported with `import * as` is copied property by property into a namespace object at
    // start-up (tfjs-core's ~1000 exports, in each module importing it: ~28 ms of every process's CPU profile), and
    // the bundle is 0.45 MB smaller. The same code runs: the outputs are the same bytes (compiled.test.ts)
    mainFields: ['module', 'main'],
    format: 'cjs',
    target: 'node20',
    // whitespace only (names stay, so stack traces still name functions): ~30% less source to read, decode and keep,
    // which loads ~70 ms sooner per process (measured on a 2-core VM where fresh memory costs ~15 us a page)
    minifyWhitespace: true,
    // import() becomes require(): a script run from V8's code cache has no loader for import() on Node 20
    supported: { 'dynamic-import': false },
    logLevel: 'error',
    plugins: [locations],
    banner: { js: 'const __trajlab_module_url = (path) => require("node:url").pathToFileURL(require("node:path").join(__dirname, path)).href;' },
  });
  const runner = specifier(outDir, join(root, 'scripts', 'cached-bundle.cjs'));
  writeFileSync(
    loader,
    `'use strict';\n// Written by scripts/build-js.mjs: runs the bundle through V8's code cache (scripts/cached-bundle.cjs).\n` +
      `module.exports = require(${JSON.stringify(runner)}).runCached(require('node:path').join(__dirname, ${JSON.stringify(basename(outfile))}));\n`,
  );
  return loader;
}

const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(@trajlab\/[a-z0-9-]+)(\/[a-z0-9-]+)?\2/g;

let files = 0;
try {
  // a failed or partial compile must never be taken for a fresh one: the stamp goes first and comes back last
  rmSync(join(root, STAMP_FILE), { force: true });
  const { build, transform } = await import('esbuild');
  for (const pkg of packages) {
    const src = join(pkg.dir, 'src');
    const dist = join(pkg.dir, 'dist');
    rmSync(dist, { recursive: true, force: true });
    for (const rel of readdirSync(src, { recursive: true }).map(String)) {
      if (!rel.endsWith('.ts') || rel.endsWith('.test.ts') || rel.endsWith('.d.ts')) continue;
      const from = join(src, rel);
      const to = join(dist, rel.replace(/\.ts$/, '.js'));
      const { code } = await transform(readFileSync(from, 'utf8'), { loader: 'ts', format: 'esm', target: 'node20', sourcefile: from, tsconfigRaw: { compilerOptions } });
      const rewritten = code.replace(SPECIFIER, (whole, lead, quote, name, sub) => {
        const target = compiledTarget(name, sub ? `.${sub}` : '.');
        if (!target) throw new Error(`${relative(root, from)}: cannot compile the import of ${name}${sub ?? ''} (no ./src export)`);
        return `${lead}${quote}${specifier(dirname(to), target)}${quote}`;
      });
      mkdirSync(dirname(to), { recursive: true });
      writeFileSync(to, rewritten);
      files++;
    }
  }
  const bundles = [];
  for (const entry of BUNDLES) {
    if (existsSync(join(root, entry))) bundles.push(relative(root, await bundle(build, join(root, entry))));
  }
  writeFileSync(join(root, STAMP_FILE), `${JSON.stringify(sourceStamp(root))}\n`);
  console.log(`trajlab: compiled ${files} TypeScript files to JavaScript (dist/ of each package), bundled ${bundles.join(', ')}`);
} catch (err) {
  // the command then runs the sources through tsx, as without a compile: installing never fails because of it
  console.log(`trajlab: TypeScript not compiled (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); the command runs the sources through tsx`);
}
