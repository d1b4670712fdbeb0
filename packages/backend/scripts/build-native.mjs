#!/usr/bin/env node
// Builds the optional native BLAS binding (native/trajlab_blas.c -> native/build/trajlab_blas.node) against
// OpenBLAS. Runs at `pnpm install`; where a C compiler, Node's headers or OpenBLAS (Debian: libopenblas-dev) are
// missing it says why and exits 0: trajlab then multiplies matrices with the wasm backend's own kernel.
// Set TRAJLAB_NATIVE_BLAS=off to skip the build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, '..', 'native', 'trajlab_blas.c');
const outDir = join(here, '..', 'native', 'build');
const target = join(outDir, 'trajlab_blas.node');

function skip(reason) {
  console.log(`trajlab: native BLAS not built (${reason}); matrix products use the wasm backend`);
  process.exit(0);
}

if ((process.env.TRAJLAB_NATIVE_BLAS ?? '').toLowerCase() === 'off') skip('TRAJLAB_NATIVE_BLAS=off');
if (process.platform === 'win32') skip('not supported on Windows');

// Node's headers: the prefix npm builds addons against (npm_config_nodedir), else the running Node's own prefix.
const prefixes = [process.env.npm_config_nodedir, join(dirname(process.execPath), '..')].filter(Boolean);
const include = prefixes.map((p) => join(p, 'include', 'node')).find((d) => existsSync(join(d, 'node_api.h')));
if (!include) skip(`node_api.h not found under ${prefixes.map((p) => join(p, 'include', 'node')).join(' or ')}`);

const cc = process.env.CC ?? 'cc';
if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0) skip(`no C compiler ('${cc}')`);

// OpenBLAS: Debian keeps cblas.h under include/<triplet> or include/openblas; pkg-config knows where when present.
const pkg = spawnSync('pkg-config', ['--cflags', '--libs', 'openblas'], { encoding: 'utf8' });
const blasFlags = pkg.status === 0 ? pkg.stdout.trim().split(/\s+/).filter(Boolean) : ['-lopenblas'];

mkdirSync(outDir, { recursive: true });
const tmp = `${target}.tmp`;
const args = ['-O2', '-std=c11', '-shared', '-fPIC', '-fvisibility=hidden', `-I${include}`, source, '-o', tmp, ...blasFlags];
const built = spawnSync(cc, args, { encoding: 'utf8' });
if (built.status !== 0) {
  rmSync(tmp, { force: true });
  const firstError = (built.stderr || built.error?.message || '').split('\n').find((l) => /error|cannot find/i.test(l)) ?? 'compiler failed';
  skip(`${firstError.trim()} — install OpenBLAS (Debian: apt-get install libopenblas-dev)`);
}
renameSync(tmp, target);
console.log(`trajlab: native BLAS built (${target.slice(process.cwd().length + 1) || target})`);
