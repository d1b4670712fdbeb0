#!/usr/bin/env node
// Builds the optional native binding (native/trajlab_blas.c, native/stable_gemm.c, native/pruned_denoiser.c ->
// native/build/trajlab_blas.node). Runs at `pnpm install`; where a C compiler or Node's headers are missing it says
// why and exits 0: trajlab then multiplies matrices with the wasm backend's own kernel. No BLAS library is needed.
// Set TRAJLAB_NATIVE_BLAS=off to skip the build.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sources = ['trajlab_blas.c', 'stable_gemm.c', 'dense_denoiser.c', 'pruned_denoiser.c'].map((f) => join(here, '..', 'native', f));
const outDir = join(here, '..', 'native', 'build');
const target = join(outDir, 'trajlab_blas.node');

function skip(reason) {
  console.log(`trajlab: native matrix products not built (${reason}); they use the wasm backend`);
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

mkdirSync(outDir, { recursive: true });
const tmp = `${target}.tmp`;
// -std=c11 (not gnu11) keeps the compiler from contracting a * b + c into fma on its own: the kernels' fma are explicit
const args = ['-O2', '-std=c11', '-shared', '-fPIC', '-fvisibility=hidden', '-pthread', `-I${include}`, ...sources, '-o', tmp, '-lm'];
const built = spawnSync(cc, args, { encoding: 'utf8' });
if (built.status !== 0) {
  rmSync(tmp, { force: true });
  const firstError = (built.stderr || built.error?.message || '').split('\n').find((l) => /error|cannot find/i.test(l)) ?? 'compiler failed';
  skip(firstError.trim());
}
renameSync(tmp, target);
console.log(`trajlab: native matrix products built (${target.slice(process.cwd().length + 1) || target})`);
