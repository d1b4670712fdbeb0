// Whether the compiled JavaScript (dist/ of each workspace package, written by scripts/build-js.mjs at `pnpm install`)
// still matches the TypeScript sources, so the `trajlab` command can run it instead of loading tsx. Plain JavaScript:
// it runs before any loader. TRAJLAB_COMPILED=off always runs the sources.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The stamp of the compiled sources (under node_modules: removed with it, never committed). */
export const STAMP_FILE = join('node_modules', '.trajlab-compiled.json');

/** A bundled entry `dist/x.js` is `dist/x` + this (CommonJS: loaded with require, which skips the ES module loader). */
export const BUNDLE_SUFFIX = '.bundle.cjs';

/** The workspace packages: name, directory and exports map, from packages/* and services/*. */
export function workspacePackages(root) {
  const out = [];
  for (const group of ['packages', 'services']) {
    for (const entry of readdirSync(join(root, group))) {
      const file = join(root, group, entry, 'package.json');
      if (!existsSync(file)) continue;
      const pkg = JSON.parse(readFileSync(file, 'utf8'));
      out.push({ name: pkg.name, dir: join(root, group, entry), exports: pkg.exports });
    }
  }
  return out;
}

/**
 * What the compiled output depends on: every non-test TypeScript source (path, size, modification time), the package
 * manifests (their exports) and the compiler script, summarised as counts and the newest time.
 */
export function sourceStamp(root) {
  let files = 0;
  let bytes = 0;
  let newest = 0;
  const note = (path) => {
    const s = statSync(path);
    files++;
    bytes += s.size;
    newest = Math.max(newest, s.mtimeMs);
  };
  note(join(root, 'scripts', 'build-js.mjs'));
  for (const pkg of workspacePackages(root)) {
    note(join(pkg.dir, 'package.json'));
    const src = join(pkg.dir, 'src');
    for (const rel of readdirSync(src, { recursive: true }).map(String)) {
      if (rel.endsWith('.ts') && !rel.endsWith('.test.ts')) note(join(src, rel));
    }
  }
  return { files, bytes, newest };
}

/** Whether dist/ may be run: compiled, not switched off, and no source changed since. */
export function compiledIsFresh(root, env = process.env) {
  if ((env.TRAJLAB_COMPILED ?? '').trim().toLowerCase() === 'off') return false;
  const stampPath = join(root, STAMP_FILE);
  if (!existsSync(stampPath)) return false;
  try {
    const stamp = JSON.parse(readFileSync(stampPath, 'utf8'));
    const now = sourceStamp(root);
    return stamp.files === now.files && stamp.bytes === now.bytes && stamp.newest === now.newest;
  } catch {
    return false;
  }
}

/**
 * Imports a workspace package's entry (`<dir>/src/index.ts`) when fresh compiled: its bundle (dist/index.bundle.cjs)
 * if there is one, else dist/index.js; else the source through tsx (registered here, and added to the options of the
 * Node processes this one forks). The repository root is `root`; `fresh`: compiledIsFresh(root), when the caller has
 * it already (it walks the sources). @defaultValue computed here
 */
export async function importEntry(root, dir, fresh = compiledIsFresh(root)) {
  if (fresh) {
    const bundled = join(dir, 'dist', `index${BUNDLE_SUFFIX}`);
    if (existsSync(bundled)) return createRequire(import.meta.url)(bundled);
    return import(pathToFileURL(join(dir, 'dist', 'index.js')).href);
  }
  (await import('tsx/esm/api')).register();
  // processes this one forks with its own options (BullMQ's sandboxed processors) must load TypeScript too
  process.execArgv.push('--import', import.meta.resolve('tsx'));
  return import(pathToFileURL(join(dir, 'src', 'index.ts')).href);
}
