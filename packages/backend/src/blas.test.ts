import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';
import { activeBackend, BlasChoiceError, blasFromEnv, chooseNativeIsa, installNativeMatMul, loadNativeBlas, missingBindingFunctions, NATIVE_ISAS, nativeMatMulActive, shareNativeThreads, uninstallNativeMatMul, type NativeBlas, type NativeIsa } from './index.js';

// CI has a C compiler and Node's headers at `pnpm install`, so there the binding must exist and be in use; on a machine
// without them these tests are skipped and the suite runs on wasm's own kernels.
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

/** The product computed by wasm's own kernels and by the native binding, as host arrays. */
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

/**
 * fmaf(a, b, c) for float32 values: a * b is exact in a double, a * b + c is exact as a double sum s plus its error
 * e (TwoSum), and s rounds to the same float32 as the exact sum unless s lies on a midpoint between two float32
 * values (doubles hold those exactly), where the sign of e decides.
 */
function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const e = p - (s - bb) + (c - bb);
  const r = Math.fround(s);
  if (e === 0 || r === s) return r;
  // s is between two float32 values; it is a midpoint when both neighbours are equally far
  const other = Math.fround(r < s ? s + (s - r) : s - (r - s));
  if (s - Math.min(r, other) !== Math.max(r, other) - s || other === r) return r;
  return e > 0 ? Math.max(r, other) : Math.min(r, other);
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

describe.skipIf(!available)('native matrix products on the wasm backend', () => {
  afterAll(() => {
    installNativeMatMul(1);
  });

  it('is what the test backend uses, and says so', () => {
    expect(nativeMatMulActive()).toBe(true);
    const best = (loaded as { blas: NativeBlas }).blas.bestIsa();
    expect(activeBackend()!.matMul).toBe(`native row-stable sgemm (${best}), 1 thread`);
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

  it('computes every element as the sequential fused multiply-add chain over the inner dimension', () => {
    // reference: c = 0; for p: c = fma(a[i, p], b[p, j], c), with float32 fma done exactly in doubles
    const { blas } = loaded as { blas: NativeBlas };
    // a general shape, and matrix-vector shapes (their own code path)
    const shapes: [number, number, number][] = [[7, 53, 41], [19, 1, 41], [1, 53, 41]];
    for (const [[m, n, k], [tA, tB]] of shapes.flatMap((shape) => ([[false, false], [false, true], [true, false], [true, true]] as const).map((t) => [shape, t] as const))) {
      const a = values(m * k, 11);
      const b = values(k * n, 12);
      const c = new Float32Array(m * n);
      blas.sgemm(tA, tB, m, n, k, a, b, c);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let p = 0; p < k; p++) acc = fmaf(a[tA ? p * m + i : i * k + p]!, b[tB ? j * k + p : p * n + j]!, acc);
          expect(Object.is(c[i * n + j], acc), `(${i}, ${j}) of ${m}x${n}x${k} ${tA ? 'A^T' : 'A'} ${tB ? 'B^T' : 'B'}`).toBe(true);
        }
      }
    }
  });

  it('gives the same bits with every instruction set and thread count', () => {
    const { blas } = loaded as { blas: NativeBlas };
    const isas = NATIVE_ISAS.slice(NATIVE_ISAS.indexOf(blas.bestIsa()));
    // shapes past every tile edge, and one large enough to be split over threads
    const shapes: [number, number, number][] = [[1, 1, 1], [5, 70, 3], [37, 53, 70], [33, 1000, 300], [300, 1, 70], [1, 300, 70]];
    try {
      for (const [m, n, k] of shapes) {
        for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
          const a = values(m * k, 21);
          const b = values(k * n, 22);
          let first: Buffer | null = null;
          for (const isa of isas) {
            for (const threads of [1, 3]) {
              blas.setIsa(isa as NativeIsa);
              blas.setThreads(threads);
              const c = new Float32Array(m * n);
              blas.sgemm(tA, tB, m, n, k, a, b, c);
              const bytes = Buffer.from(c.buffer);
              first ??= bytes;
              expect(bytes.equals(first), `${m}x${n}x${k} ${tA}/${tB} with ${isa}, ${threads} threads`).toBe(true);
            }
          }
        }
      }
    } finally {
      installNativeMatMul(1);
    }
    expect(blas.isa()).toBe(blas.bestIsa());
  });

  it('refuses an instruction set the CPU lacks, and names the choice in its reason', () => {
    const { blas } = loaded as { blas: NativeBlas };
    expect(() => blas.setIsa('sse' as NativeIsa)).toThrow(/avx512, avx2 or scalar/);
    if (blas.bestIsa() !== 'avx512') expect(installNativeMatMul(1, 'avx512')).toEqual({ reason: `TRAJLAB_BLAS_ISA=avx512 but this CPU's fastest is ${blas.bestIsa()}` });
    // an explicit request for the portable path is honoured, in auto mode too
    expect(installNativeMatMul(1, 'scalar', true)).toHaveProperty('blas');
    expect(blas.isa()).toBe('scalar');
    installNativeMatMul(1);
    expect(blas.isa()).toBe(blas.bestIsa());
  });

  it('lends a process more threads: share times those it was installed with, 1 gives them back, a bad share is refused', () => {
    const { blas } = loaded as { blas: NativeBlas };
    installNativeMatMul(3);
    shareNativeThreads(2);
    expect(blas.threads()).toBe(6);
    shareNativeThreads(1);
    expect(blas.threads()).toBe(3);
    expect(() => shareNativeThreads(0)).toThrow(/positive integer; got 0/);
    installNativeMatMul(1);
    shareNativeThreads(2);
    expect(blas.threads()).toBe(2);
    shareNativeThreads(1);
    expect(blas.threads()).toBe(1);
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

describe('the native binding', () => {
  it('is refused, by name of what it lacks, when it was built by an older trajlab', () => {
    const fn = () => {};
    // the OpenBLAS binding of earlier versions: sgemm, setThreads, threads, config
    expect(missingBindingFunctions({ sgemm: fn, setThreads: fn, threads: fn, config: fn })).toEqual(['denseDenoise', 'denseExp', 'prunedDenoise', 'kdeSums', 'setIsa', 'isa', 'bestIsa']);
    // the first row-stable binding, without the pruned denoiser
    expect(missingBindingFunctions({ sgemm: fn, setThreads: fn, threads: fn, setIsa: fn, isa: fn, bestIsa: fn })).toEqual(['denseDenoise', 'denseExp', 'prunedDenoise', 'kdeSums']);
    // the one before the one-pass dense denoiser
    expect(missingBindingFunctions({ sgemm: fn, prunedDenoise: fn, setThreads: fn, threads: fn, setIsa: fn, isa: fn, bestIsa: fn })).toEqual(['denseDenoise', 'denseExp', 'kdeSums']);
    // the one before the native KDE sums
    expect(missingBindingFunctions({ sgemm: fn, denseDenoise: fn, denseExp: fn, prunedDenoise: fn, setThreads: fn, threads: fn, setIsa: fn, isa: fn, bestIsa: fn })).toEqual(['kdeSums']);
    expect(missingBindingFunctions({ sgemm: fn, denseDenoise: fn, denseExp: fn, prunedDenoise: fn, kdeSums: fn, setThreads: fn, threads: fn, setIsa: fn, isa: fn, bestIsa: fn })).toEqual([]);
    if ('blas' in loaded) expect(missingBindingFunctions(loaded.blas as unknown as Record<string, unknown>)).toEqual([]);
  });

  it.skipIf(!('blas' in loaded))('prunedDenoise refuses arrays that do not match their shapes, naming them', () => {
    if (!('blas' in loaded)) return;
    const { blas } = loaded;
    const [n, dim, rank, b] = [4, 3, 2, 2];
    const f = (len: number) => new Float32Array(len);
    const call = (over: { table?: Float32Array; x?: Float32Array; t?: number; kept?: unknown }) => () =>
      blas.prunedDenoise(f(n * dim), f(n), f(dim), f(dim * rank), over.table ?? f((rank + 2) * n), 1, 1, over.x ?? f(b * dim), over.t ?? 0.5, 10, n, f(b * dim), (over.kept ?? new Int32Array(b)) as Int32Array);
    expect(call({})).not.toThrow();
    expect(call({ table: f((rank + 1) * n) })).toThrow(/do not match n = halfNorm.length/);
    expect(call({ x: f(dim) })).toThrow(RangeError);
    expect(call({ t: 0 })).toThrow(/t <= 0/);
    expect(call({ kept: f(b) })).toThrow(/kept must be an Int32Array/);
  });
});

describe('TRAJLAB_BLAS, TRAJLAB_BLAS_THREADS and TRAJLAB_BLAS_ISA', () => {
  it('choose the instruction set: the fastest unless asked, never one the CPU lacks, the portable path only when asked', () => {
    expect(chooseNativeIsa('avx512', 'auto', true)).toEqual({ isa: 'avx512' });
    expect(chooseNativeIsa('avx512', 'avx2', true)).toEqual({ isa: 'avx2' });
    expect(chooseNativeIsa('avx512', 'scalar', true)).toEqual({ isa: 'scalar' });
    expect(chooseNativeIsa('avx2', 'avx512', false)).toEqual({ reason: "TRAJLAB_BLAS_ISA=avx512 but this CPU's fastest is avx2" });
    expect(chooseNativeIsa('scalar', 'auto', true)).toEqual({ reason: expect.stringMatching(/^this CPU has neither AVX2 with FMA nor AVX-512/) });
    expect(chooseNativeIsa('scalar', 'auto', false)).toEqual({ isa: 'scalar' });
    expect(chooseNativeIsa('scalar', 'scalar', true)).toEqual({ isa: 'scalar' });
  });

  it('default to auto, one thread and the fastest instruction set', () => {
    expect(blasFromEnv({})).toEqual({ choice: 'auto', threads: 1, isa: 'auto' });
    expect(blasFromEnv({ TRAJLAB_BLAS: ' OFF ', TRAJLAB_BLAS_THREADS: '2', TRAJLAB_BLAS_ISA: 'AVX2' })).toEqual({ choice: 'off', threads: 2, isa: 'avx2' });
  });

  it.each([
    [{ TRAJLAB_BLAS_ISA: 'sse2' }, /TRAJLAB_BLAS_ISA must be one of auto, avx512, avx2, scalar; got 'sse2'/],
    [{ TRAJLAB_BLAS: 'mkl' }, /TRAJLAB_BLAS must be one of auto, on, off; got 'mkl'/],
    [{ TRAJLAB_BLAS_THREADS: '0' }, /TRAJLAB_BLAS_THREADS must be an integer from 1 to 256; got '0'/],
    [{ TRAJLAB_BLAS_THREADS: '1.5' }, /TRAJLAB_BLAS_THREADS .* got '1.5'/],
  ])('refuse %o with a message naming the variable', (env, message) => {
    expect(() => blasFromEnv(env)).toThrow(BlasChoiceError);
    expect(() => blasFromEnv(env)).toThrow(message);
  });
});
