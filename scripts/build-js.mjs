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
// (bullmq, ioredis, the AWS SDK, tfjs-node) stay outside the command's bundle; bullmq and ioredis, which every
// distributed command loads, get a bundle of their own beside it (PACKAGE_BUNDLES), also run through the code cache,
// and the rest is required from where it is installed.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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
/** The CommonJS module function every bundle is written in (see wrapBundle). */
const { WRAPPER } = createRequire(import.meta.url)('./cached-bundle.cjs');
/**
 * Installed packages bundled on their own, for the bundles of `usedBy`: each such bundle requires them from
 * `<name>` + BUNDLE_SUFFIX (their CommonJS builds, as `require` loads them installed) instead of from where they are
 * installed. bullmq and ioredis are what every distributed command (submit, watch, status, cancel, retry) loads first:
 * ~95 ms from their ~180 installed files on a 2-core VM, ~30 ms from one bundle through V8's code cache. In the command's
 * own bundle they would cost `trajlab run`, which never loads them, ~15 ms of reading and decoding (both measured by hand).
 */
const PACKAGE_BUNDLES = [{ name: 'services/coordinator/dist/queue-packages', packages: ['bullmq', 'ioredis'], usedBy: ['services/coordinator/dist/index.js'] }];
/** The esbuild namespace of the modules that stand for a package of PACKAGE_BUNDLES in the bundles using it. */
const FROM_PACKAGE_BUNDLE = 'trajlab-package-bundle';

/** esbuild's options for every bundle: one CommonJS file for Node, run through V8's code cache (writeLoader). */
const BUNDLE_OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // whitespace only (names stay, so stack traces still name functions): ~30% less source to read, decode and keep,
  // which loads ~70 ms sooner per process (measured on a 2-core VM where fresh memory costs ~15 us a page)
  minifyWhitespace: true,
  // import() becomes require(): a script run from V8's code cache has no loader for import() on Node 20
  supported: { 'dynamic-import': false },
  logLevel: 'error',
};

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
  const outfile = entry.replace(/\.js$/, '.bundle-code.cjs');
  const outDir = dirname(outfile);
  const packageBundles = PACKAGE_BUNDLES.filter((p) => p.usedBy.includes(relative(root, entry).split(sep).join('/')));
  const compiledFile = /[\\/](packages|services)[\\/][^\\/]+[\\/]dist[\\/].*\.js$/;
  const locations = {
    name: 'trajlab-locations',
    setup(b) {
      b.onResolve({ filter: /^[@a-z]/ }, (args) => {
        const own = packageBundles.find((p) => p.packages.includes(args.path));
        if (own) return { path: args.path, namespace: FROM_PACKAGE_BUNDLE, pluginData: specifier(outDir, join(root, own.name + BUNDLE_SUFFIX)) };
        if (!OUTSIDE.test(args.path)) return undefined;
        // resolved as the importing module would (each package sees its own dependencies), required from there
        const installed = createRequire(join(args.resolveDir, 'index.js')).resolve(args.path);
        return { path: specifier(outDir, installed), external: true };
      });
      // a package of a package bundle is that bundle's export of it; the bundle itself is required where it lies
      b.onLoad({ filter: /.*/, namespace: FROM_PACKAGE_BUNDLE }, (args) => ({
        contents: `module.exports = require(${JSON.stringify(args.pluginData)})[${JSON.stringify(args.path)}];\n`,
        loader: 'js',
      }));
      b.onResolve({ filter: new RegExp(`${BUNDLE_SUFFIX.replaceAll('.', '\\.')}$`) }, (args) => (args.namespace === FROM_PACKAGE_BUNDLE ? { path: args.path, external: true } : undefined));
      b.onLoad({ filter: compiledFile }, (args) => ({
        contents: readFileSync(args.path, 'utf8')
          .replaceAll('import.meta.url', `__trajlab_module_url(${JSON.stringify(specifier(outDir, args.path))})`)
          .replaceAll('import.meta.resolve(', 'require.resolve('),
        loader: 'js',
      }));
    },
  };
  await build({
    ...BUNDLE_OPTIONS,
    entryPoints: [entry],
    outfile,
    // packages' ES module builds where they have one (tfjs's, flatbuffers'): esbuild links their exports directly,
    // where a CommonJS build imported with `import * as` is copied property by property into a namespace object at
    // start-up (tfjs-core's ~1000 exports, in each module importing it: ~28 ms of every process's CPU profile), and
    // the bundle is 0.45 MB smaller. The same code runs: the outputs are the same bytes (compiled.test.ts)
    mainFields: ['module', 'main'],
    plugins: [locations],
    banner: { js: 'const __trajlab_module_url = (path) => require("node:url").pathToFileURL(require("node:path").join(__dirname, path)).href;' },
  });
  return writeLoader(outfile, entry.replace(/\.js$/, BUNDLE_SUFFIX));
}

/**
 * Wraps the bundle `outfile` in the CommonJS module function (cached-bundle.cjs's WRAPPER), so that a process compiles
 * the file's text as it lies (mapped, not copied: see cached-bundle.cjs). Written aside and renamed, as the build
 * never rewrites a file a running process may have mapped.
 */
function wrapBundle(outfile) {
  const text = readFileSync(outfile, 'latin1');
  writeFileSync(`${outfile}.tmp`, WRAPPER[0] + text + WRAPPER[1], 'latin1');
  renameSync(`${outfile}.tmp`, outfile);
}

/** Writes `loader`, which runs the bundle `outfile` through V8's code cache (scripts/cached-bundle.cjs); returns its path. */
function writeLoader(outfile, loader) {
  wrapBundle(outfile);
  const runner = specifier(dirname(outfile), join(root, 'scripts', 'cached-bundle.cjs'));
  writeFileSync(
    loader,
    `'use strict';\n// Written by scripts/build-js.mjs: runs the bundle through V8's code cache (scripts/cached-bundle.cjs).\n` +
      `module.exports = require(${JSON.stringify(runner)}).runCached(require('node:path').join(__dirname, ${JSON.stringify(basename(outfile))}));\n`,
  );
  return loader;
}

/**
 * Bundles the installed packages of `pkgs` (PACKAGE_BUNDLES), resolved from the first bundle using them, into
 * `<name>.bundle-code.cjs`, whose exports are theirs by package name; returns the path of its loader.
 */
async function bundlePackages(build, pkgs) {
  const outfile = join(root, `${pkgs.name}.bundle-code.cjs`);
  await build({
    stdin: { contents: `module.exports = {\n${pkgs.packages.map((p) => `  ${JSON.stringify(p)}: require(${JSON.stringify(p)}),`).join('\n')}\n};\n`, resolveDir: join(root, dirname(pkgs.usedBy[0])), loader: 'js' },
    ...BUNDLE_OPTIONS,
    outfile,
    // their CommonJS builds, as `require` loads them installed
    mainFields: ['main'],
  });
  return writeLoader(outfile, join(root, pkgs.name + BUNDLE_SUFFIX));
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
  for (const pkgs of PACKAGE_BUNDLES) {
    if (pkgs.usedBy.some((entry) => BUNDLES.includes(entry) && existsSync(join(root, entry)))) bundles.push(relative(root, await bundlePackages(build, pkgs)));
  }
  for (const entry of BUNDLES) {
    if (existsSync(join(root, entry))) bundles.push(relative(root, await bundle(build, join(root, entry))));
  }
  writeFileSync(join(root, STAMP_FILE), `${JSON.stringify(sourceStamp(root))}\n`);
  console.log(`trajlab: compiled ${files} TypeScript files to JavaScript (dist/ of each package), bundled ${bundles.join(', ')}`);
} catch (err) {
  // the command then runs the sources through tsx, as without a compile: installing never fails because of it
  console.log(`trajlab: TypeScript not compiled (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); the command runs the sources through tsx`);
}
