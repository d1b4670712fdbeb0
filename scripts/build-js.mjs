#!/usr/bin/env node
// Compiles every workspace package's TypeScript (src/**/*.ts, tests excluded) to JavaScript in its dist/ folder, one
// file per source file, so that the `trajlab` command and its shard processes start without the TypeScript loader
// (tsx costs ~0.3 s per process). Runs at `pnpm install` (the root `prepare` script) and writes a stamp of the
// sources it compiled; the command uses dist/ only while the sources still match that stamp (see
// scripts/compiled.mjs) and otherwise runs the sources through tsx as before, so an edited checkout never runs stale
// code. Workspace imports (@trajlab/x) are rewritten to the relative path of the package's compiled entry.
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceStamp, STAMP_FILE, workspacePackages } from './compiled.mjs';

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

const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(@trajlab\/[a-z0-9-]+)(\/[a-z0-9-]+)?\2/g;

let files = 0;
try {
  // a failed or partial compile must never be taken for a fresh one: the stamp goes first and comes back last
  rmSync(join(root, STAMP_FILE), { force: true });
  const { transform } = await import('esbuild');
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
        let path = relative(dirname(to), target).split('\\').join('/');
        if (!path.startsWith('.')) path = `./${path}`;
        return `${lead}${quote}${path}${quote}`;
      });
      mkdirSync(dirname(to), { recursive: true });
      writeFileSync(to, rewritten);
      files++;
    }
  }
  writeFileSync(join(root, STAMP_FILE), `${JSON.stringify(sourceStamp(root))}\n`);
  console.log(`trajlab: compiled ${files} TypeScript files to JavaScript (dist/ of each package)`);
} catch (err) {
  // the command then runs the sources through tsx, as without a compile: installing never fails because of it
  console.log(`trajlab: TypeScript not compiled (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); the command runs the sources through tsx`);
}
