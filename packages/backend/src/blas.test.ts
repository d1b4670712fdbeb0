import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { activeBackend, BlasChoiceError, blasCoreFromEnv, blasFromEnv, installNativeMatMul, loadNativeBlas, nativeMatMulActive, uninstallNativeMatMul } from './index.js';

// CI installs OpenBLAS (libopenblas-dev) before `pnpm install`, so there the binding must exist and be in use; on a
// machine without it these tests are skipped and the suite runs on wasm's own kernels.
const loaded = loadNativeBlas();
const available = 'blas' in loaded && tf.getBackend() === 'wasm';
if (process.env.CI && !available) throw new Error(`CI expects the native BLAS binding: ${'reason' in loaded ? loaded.reason : `backend is ${tf.getBackend()}`}`);

/** Deterministic pseudo-random float32 values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 16807) % 2147483647;
    out[i] = (2 * s) / 2147483647 - 1;
  }
  return out;
}

/** The product computed by wasm's own kernels and by OpenBLAS, as host arrays. */
function both(f: () => tf.Tensor): { wasm: Float32Array; blas: Float32Array; shape: number[] } {
  uninstallNativeMatMul();
  const w = f();
  installNativeMatMul(1);
  const b = f();
  expect(b.shape).toEqual(w.shape);
  const res = { wasm: w.dataSync() as Float32Array, blas: b.dataSync() as Float32Array, shape: b.shape };
  tf.dispose([w, b]);
  return res;
}

/** Largest |a - b| relative to the largest |a|. */
function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(a[i]!));
  }
  return num / den;
}

describe.skipIf(!available)('OpenBLAS matrix products on the wasm backend', () => {
  afterAll(() => {
    installNativeMatMul(1);
  });

  it('is what the test backend uses, and says so', () => {
    expect(nativeMatMulActive()).toBe(true);
    expect(activeBackend()!.matMul).toMatch(/^OpenBLAS \d+\.\d+/);
    expect(activeBackend()!.matMul).toMatch(/1 thread$/);
    // the AVX kernels on every x86-64 CPU with AVX, unless the environment names others
    const flags = process.arch === 'x64' ? (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '') : '';
    if (/\bavx\b/.test(flags) && !process.env.TRAJLAB_BLAS_CORE) expect(activeBackend()!.matMul).toMatch(/ Sandybridge /i);
  });

  it.each([
    ['plain', [7, 33], [33, 5], false, false],
    ['transposeA', [33, 7], [33, 5], true, false],
    ['transposeB', [7, 33], [5, 33], false, true],
    ['both transposed', [33, 7], [5, 33], true, true],
    ['batched', [3, 7, 33], [3, 33, 5], false, false],
    ['batch broadcast on the right', [4, 7, 33], [1, 33, 5], false, false],
    ['batch broadcast on the left', [1, 7, 33], [2, 5, 33], false, true],
    ['rank 4', [2, 3, 7, 33], [2, 3, 33, 5], false, false],
    ['inner size 0', [4, 0], [0, 3], false, false],
  ] as const)('matches wasm for %s products', (_, aShape, bShape, tA, tB) => {
    const size = (shape: readonly number[]) => shape.reduce((p: number, q: number) => p * q, 1);
    const a = tf.tensor(values(size(aShape), 1), [...aShape]);
    const b = tf.tensor(values(size(bShape), 2), [...bShape]);
    const r = both(() => tf.matMul(a, b, tA, tB));
    expect(r.shape).toEqual(tf.matMul(a, b, tA, tB).shape);
    // an empty inner dimension gives zeros (wasm's own kernel leaves that output uninitialised)
    if (aShape[1] === 0) expect(Array.from(r.blas)).toEqual(new Array(12).fill(0));
    else expect(relErr(r.wasm, r.blas)).toBeLessThan(1e-5);
    tf.dispose([a, b]);
  });

  it.each(['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as const)('matches wasm for fused products with bias and %s', (activation) => {
    const a = tf.tensor2d(values(6 * 20, 3), [6, 20]);
    const b = tf.tensor2d(values(20 * 9, 4), [20, 9]);
    const bias = tf.tensor1d(values(9, 5));
    const r = both(() => tf.fused.matMul({ a, b, bias, activation }));
    expect(relErr(r.wasm, r.blas)).toBeLessThan(1e-5);
    tf.dispose([a, b, bias]);
  });

  it('gives each row the same bits whatever the batch it is in (so shards and workers never change results)', () => {
    const yt = tf.tensor2d(values(784 * 3000, 6), [784, 3000]);
    const x = tf.tensor2d(values(64 * 784, 7), [64, 784]);
    const full = tf.matMul(x, yt).dataSync();
    for (const rows of [1, 3, 8, 17, 32]) {
      const part = tf.tidy(() => tf.matMul(tf.slice(x, [0, 0], [rows, 784]), yt)).dataSync();
      expect(Buffer.from(part.buffer).equals(Buffer.from(full.buffer, 0, rows * 3000 * 4)), `first ${rows} rows`).toBe(true);
    }
    tf.dispose([x, yt]);
  });
});

describe('TRAJLAB_BLAS and TRAJLAB_BLAS_THREADS', () => {
  it('default to auto and one thread', () => {
    expect(blasFromEnv({})).toEqual({ choice: 'auto', threads: 1 });
    expect(blasFromEnv({ TRAJLAB_BLAS: ' OFF ', TRAJLAB_BLAS_THREADS: '2' })).toEqual({ choice: 'off', threads: 2 });
  });

  it('TRAJLAB_BLAS_CORE names OpenBLAS kernels or leaves the choice to OpenBLAS', () => {
    expect(blasCoreFromEnv({ TRAJLAB_BLAS_CORE: 'AUTO' })).toBe('auto');
    expect(blasCoreFromEnv({ TRAJLAB_BLAS_CORE: 'SkylakeX' })).toBe('SkylakeX');
    expect(['SandyBridge', 'auto']).toContain(blasCoreFromEnv({}));
  });

  it.each([
    [{ TRAJLAB_BLAS_CORE: 'Haswell; rm' }, /TRAJLAB_BLAS_CORE must be 'auto' or an OpenBLAS core name such as SandyBridge; got 'Haswell; rm'/],
    [{ TRAJLAB_BLAS: 'mkl' }, /TRAJLAB_BLAS must be one of auto, on, off; got 'mkl'/],
    [{ TRAJLAB_BLAS_THREADS: '0' }, /TRAJLAB_BLAS_THREADS must be an integer from 1 to 256; got '0'/],
    [{ TRAJLAB_BLAS_THREADS: '1.5' }, /TRAJLAB_BLAS_THREADS .* got '1.5'/],
  ])('refuse %o with a message naming the variable', (env, message) => {
    expect(() => blasFromEnv(env)).toThrow(BlasChoiceError);
    expect(() => blasFromEnv(env)).toThrow(message);
  });
});
