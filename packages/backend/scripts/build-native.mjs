#!/usr/bin/env node
// Builds the optional native binding (native/trajlab_blas.c, native/stable_gemm.c, native/dense_denoiser.c,
// native/pruned_denoiser.c, native/kde_sums.c, native/huge_heap.c -> native/build/trajlab_blas.node). Runs at
// `pnpm install`; where a C compiler or Node's headers are missing it says why and exits 0: trajlab then multiplies
// matrices with the wasm backend's own kernel. No BLAS library is needed. Set TRAJLAB_NATIVE_BLAS=off to skip the build.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildAddon } from '../../../scripts/build-addon.mjs';

const native = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
buildAddon({
  sources: ['trajlab_blas.c', 'stable_gemm.c', 'dense_denoiser.c', 'pruned_denoiser.c', 'kde_sums.c', 'huge_heap.c'].map((f) => join(native, f)),
  target: join(native, 'build', 'trajlab_blas.node'),
  what: 'native matrix products',
  fallback: 'they use the wasm backend',
  offSwitch: 'TRAJLAB_NATIVE_BLAS',
});
