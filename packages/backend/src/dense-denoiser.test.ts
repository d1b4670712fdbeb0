import { describe, expect, it } from 'vitest';
import { installNativeMatMul, loadNativeBlas, NATIVE_ISAS, type NativeBlas, type NativeIsa } from './index.js';

// CI builds the binding (see blas.test.ts, which fails there without it); elsewhere these tests need it too.
const loaded = loadNativeBlas();

/** Deterministic pseudo-random float32 values in [lo, hi). */
function values(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 16807) % 2147483647;
    out[i] = lo + ((hi - lo) * s) / 2147483647;
  }
  return out;
}

/** ||y_j||^2 / 2 in float64, rounded once to float32 (as the TrainingSet computes it). */
function halfNorms(points: Float32Array, n: number, dim: number): Float32Array {
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += points[j * dim + k]! ** 2;
    out[j] = 0.5 * s;
  }
  return out;
}

/** D*(x; t) in float64 from the definition: sum_j softmax_j(-||x - y_j||^2 / (2 t^2)) y_j. */
function reference(points: Float32Array, n: number, dim: number, x: Float32Array, t: number): Float64Array {
  const b = x.length / dim;
  const out = new Float64Array(b * dim);
  for (let r = 0; r < b; r++) {
    const logit = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let d2 = 0;
      for (let k = 0; k < dim; k++) d2 += (x[r * dim + k]! - points[j * dim + k]!) ** 2;
      logit[j] = -d2 / (2 * t * t);
    }
    const top = Math.max(...logit);
    let sum = 0;
    for (let j = 0; j < n; j++) {
      const w = Math.exp(logit[j]! - top);
      sum += w;
      for (let k = 0; k < dim; k++) out[r * dim + k] = out[r * dim + k]! + w * points[j * dim + k]!;
    }
    for (let k = 0; k < dim; k++) out[r * dim + k] = out[r * dim + k]! / sum;
  }
  return out;
}

const denoise = (blas: NativeBlas, points: Float32Array, n: number, x: Float32Array, t: number, logits: Float32Array | null = null) => {
  const out = new Float32Array(x.length);
  blas.denseDenoise(points, halfNorms(points, n, points.length / n), x, 1 / (t * t), out, logits);
  return out;
};

describe.skipIf(!('blas' in loaded))('the native dense optimal denoiser (one pass over the training set)', () => {
  const { blas } = loaded as { blas: NativeBlas };
  const isas = NATIVE_ISAS.slice(NATIVE_ISAS.indexOf(blas.bestIsa()));
  // 1300 points of 37 values: two whole blocks of 512 and a partial one, so the softmax is streamed and rescaled across
  // blocks
  const [n, dim, b] = [1300, 37, 6];
  const points = values(n * dim, 3);
  const x = values(b * dim, 4, -1.5, 1.5);

  it('exponentiates within a few float32 ulps, gives 1 at 0 and 0 below -87, with the same bits on every instruction set', () => {
    const xs = new Float32Array(2001);
    for (let i = 0; i < xs.length; i++) xs[i] = -87 * (i / (xs.length - 1)) ** 2;
    const runs: Float32Array[] = [];
    try {
      for (const isa of isas) {
        blas.setIsa(isa as NativeIsa);
        const v = xs.slice();
        blas.denseExp(v);
        runs.push(v);
      }
    } finally {
      installNativeMatMul(1);
    }
    const v = runs[0]!;
    expect(v[0]).toBe(1);
    for (let i = 0; i < xs.length; i++) expect(Math.abs(v[i]! - Math.exp(xs[i]!)) / Math.exp(xs[i]!), `e^${xs[i]}`).toBeLessThan(5e-7);
    for (const other of runs) expect(Buffer.from(other.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    const low = Float32Array.of(-87.5, -100, -Infinity, Number.NaN);
    blas.denseExp(low);
    expect(Array.from(low)).toEqual([0, 0, 0, 0]);
  });

  it('agrees with the definition computed in float64 at every sigma, whichever block holds the nearest point', () => {
    // the queries' nearest points: one in the first block, one in the last (a later block raises the running maximum)
    const near = Float32Array.from([...points.subarray(5 * dim, 6 * dim), ...points.subarray((n - 2) * dim, (n - 1) * dim)].map((v, i) => v + 0.01 * Math.sin(i)));
    const queries = Float32Array.from([...x, ...near]);
    for (const t of [50, 5, 1, 0.5, 0.2, 0.05, 0.01]) {
      const got = denoise(blas, points, n, queries, t);
      const want = reference(points, n, dim, queries, t);
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
      // float32 logits in the expanded form (x . y_j - ||y_j||^2 / 2) / t^2 carry ~1e-7 of their size (tens here) as
      // absolute error, hence relative weight errors of a few 1e-6; a wrong rescale across blocks would be O(1)
      expect(err, `sigma ${t}`).toBeLessThan(1e-5);
    }
  });

  it('agrees with the definition in image-like dimension, where a block holds fewer points (dense_block_points)', () => {
    // 800 values a point: blocks of 128 points (400 KB), so 700 points are five whole blocks and a partial one
    const [n2, dim2] = [700, 800];
    const pts = values(n2 * dim2, 5);
    const near = Float32Array.from([...pts.subarray(5 * dim2, 6 * dim2), ...pts.subarray(690 * dim2, 691 * dim2)].map((v, i) => v + 0.01 * Math.sin(i)));
    const queries = Float32Array.from([...values(2 * dim2, 6, -1.5, 1.5), ...near]);
    for (const t of [50, 10, 5, 1, 0.2, 0.05]) {
      const got = denoise(blas, pts, n2, queries, t);
      const want = reference(pts, n2, dim2, queries, t);
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
      // logits of size ~270 / t^2 carry ~1e-7 of that as absolute error; a wrong rescale across blocks would be O(1)
      expect(err, `sigma ${t}`).toBeLessThan(1e-4);
    }
  });

  it('tends to the data mean as sigma grows and to the nearest point as it shrinks', () => {
    const mean = new Float64Array(dim);
    for (let j = 0; j < n; j++) for (let k = 0; k < dim; k++) mean[k] = mean[k]! + points[j * dim + k]! / n;
    const far = denoise(blas, points, n, x, 1e4);
    for (let r = 0; r < b; r++) for (let k = 0; k < dim; k++) expect(Math.abs(far[r * dim + k]! - mean[k]!)).toBeLessThan(1e-5);
    const close = denoise(blas, points, n, x, 1e-3);
    for (let r = 0; r < b; r++) {
      let best = 0;
      let bestD = Infinity;
      for (let j = 0; j < n; j++) {
        let d2 = 0;
        for (let k = 0; k < dim; k++) d2 += (x[r * dim + k]! - points[j * dim + k]!) ** 2;
        if (d2 < bestD) [best, bestD] = [j, d2];
      }
      expect(Array.from(close.subarray(r * dim, (r + 1) * dim))).toEqual(Array.from(points.subarray(best * dim, (best + 1) * dim)));
    }
  });

  it('gives a row the same bits alone or in any batch, with every instruction set and thread count', () => {
    let first: Buffer | null = null;
    try {
      for (const isa of isas) {
        for (const threads of [1, 3]) {
          blas.setIsa(isa as NativeIsa);
          blas.setThreads(threads);
          const bytes = Buffer.from(denoise(blas, points, n, x, 0.7).buffer);
          first ??= bytes;
          expect(bytes.equals(first), `${isa}, ${threads} threads`).toBe(true);
        }
      }
    } finally {
      installNativeMatMul(1);
    }
    for (let r = 0; r < b; r++) {
      const alone = Buffer.from(denoise(blas, points, n, x.slice(r * dim, (r + 1) * dim), 0.7).buffer);
      expect(alone.equals(first!.subarray(r * dim * 4, (r + 1) * dim * 4)), `row ${r}`).toBe(true);
    }
    // a batch wider than every tile of the products, with 3 threads
    const wide = values(70 * dim, 9, -1.5, 1.5);
    blas.setThreads(3);
    const all = Buffer.from(denoise(blas, points, n, wide, 0.7).buffer);
    installNativeMatMul(1);
    for (const r of [0, 33, 69]) {
      const alone = Buffer.from(denoise(blas, points, n, wide.slice(r * dim, (r + 1) * dim), 0.7).buffer);
      expect(alone.equals(all.subarray(r * dim * 4, (r + 1) * dim * 4)), `row ${r} of 70`).toBe(true);
    }
  });

  it('takes a wide batch in groups of queries (dense_group_queries) without changing a row\'s bits or logits, on every instruction set', () => {
    // blocks of 512 points of 37 values: groups of 128 queries; 300 rows make two whole groups and a part, and leave
    // 12 and 4 columns past the last whole vector of 16 and of 8 lanes (the scalar tails of the per-query passes). One
    // row holds a NaN: its result is NaN, and the others' bits do not see it.
    const rows = 300;
    const wide = values(rows * dim, 11, -1.5, 1.5);
    wide[130 * dim + 5] = Number.NaN;
    const alone = (r: number) => {
      const logits = new Float32Array(n);
      const out = denoise(blas, points, n, wide.slice(r * dim, (r + 1) * dim), 0.6, logits);
      return { out: Buffer.from(out.buffer), logits: Buffer.from(logits.buffer) };
    };
    let first: Buffer | null = null;
    try {
      for (const isa of isas) {
        blas.setIsa(isa as NativeIsa);
        const logits = new Float32Array(rows * n);
        const out = denoise(blas, points, n, wide, 0.6, logits);
        const bytes = Buffer.concat([Buffer.from(out.buffer), Buffer.from(logits.buffer)]);
        first ??= bytes;
        expect(bytes.equals(first), isa).toBe(true);
        expect(Array.from(out.subarray(130 * dim, 131 * dim)).every(Number.isNaN), isa).toBe(true);
        for (const r of [0, 127, 128, 129, 131, 255, 256, 291, 292, 299]) {
          const one = alone(r);
          expect(Buffer.from(out.buffer, r * dim * 4, dim * 4).equals(one.out), `${isa}, row ${r}`).toBe(true);
          expect(Buffer.from(logits.buffer, r * n * 4, n * 4).equals(one.logits), `${isa}, logits of row ${r}`).toBe(true);
        }
      }
    } finally {
      installNativeMatMul(1);
    }
  });

  it('hands out the logits of the tensor path bit for bit: (x * (1 / t^2)) . y_j by the product, minus (||y_j||^2 / 2) / t^2', () => {
    const t = 0.9;
    const invT2 = Math.fround(1 / (t * t));
    const logits = new Float32Array(b * n);
    denoise(blas, points, n, x, t, logits);
    const q = x.map((v) => v * invT2);
    const dots = new Float32Array(b * n);
    blas.sgemm(false, true, b, n, dim, q, points, dots);
    const hn = halfNorms(points, n, dim);
    const want = dots.map((v, i) => v - Math.fround(hn[i % n]! * invT2));
    expect(Buffer.from(logits.buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it('refuses arrays that do not match their shapes and a sigma that is not positive, naming them', () => {
    const f = (len: number) => new Float32Array(len);
    const call = (over: { x?: Float32Array; out?: Float32Array; logits?: Float32Array | null; invT2?: number }) => () =>
      blas.denseDenoise(f(4 * 3), f(4), over.x ?? f(2 * 3), over.invT2 ?? 1, over.out ?? f(2 * 3), over.logits === undefined ? null : over.logits);
    expect(call({})).not.toThrow();
    expect(call({ logits: f(2 * 4) })).not.toThrow();
    expect(call({ x: f(5) })).toThrow(/do not match n = halfNorm.length/);
    expect(call({ out: f(3) })).toThrow(RangeError);
    expect(call({ logits: f(3) })).toThrow(RangeError);
    expect(call({ invT2: 0 })).toThrow(/invT2 is not positive and finite/);
    expect(call({ invT2: Number.POSITIVE_INFINITY })).toThrow(RangeError);
    // finite as a double, infinite in float32 (sigma ~ 1e-20)
    expect(call({ invT2: 1e40 })).toThrow(/finite in float32/);
    expect(() => blas.denseDenoise(f(12), f(4), f(6), 1, f(6), [] as unknown as Float32Array)).toThrow(/logits must be a Float32Array or null/);
  });
});
