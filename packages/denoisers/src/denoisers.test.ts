import * as tf from '@tensorflow/tfjs-core';
import { installNativeMatMul, nativeMatMulActive, uninstallNativeMatMul } from '@trajlab/backend';
import { normalStream } from '@trajlab/core';
import { gaussianDataset, gmmDataset } from '@trajlab/datasets';
import { describe, expect, it } from 'vitest';
import { fitGaussian, gaussianDenoiser, gmmDenoiser } from './analytic.js';
import { TrainingSet } from './training-set.js';

const dim = 5;
const n = 300;
const points = Float32Array.from(normalStream(11, 0, n * dim));
const queries = Float32Array.from(normalStream(12, 0, 4 * dim).map((v) => 2 * v));

/** Float64 brute force of D*(x; t) = sum_j softmax_j(-||x - y_j||^2 / (2 t^2)) y_j. */
function bruteOptimal(x: Float32Array, row: number, t: number): number[] {
  const logits = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let k = 0; k < dim; k++) s += (x[row * dim + k]! - points[j * dim + k]!) ** 2;
    return -s / (2 * t * t);
  });
  const m = Math.max(...logits);
  const w = logits.map((l) => Math.exp(l - m));
  const z = w.reduce((a, b) => a + b, 0);
  return Array.from({ length: dim }, (_, k) => w.reduce((acc, wj, j) => acc + (wj / z) * points[j * dim + k]!, 0));
}

function bruteLogKde(x: ArrayLike<number>, t: number): number {
  const logits = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let k = 0; k < dim; k++) s += (x[k]! - points[j * dim + k]!) ** 2;
    return -s / (2 * t * t);
  });
  const m = Math.max(...logits);
  return m + Math.log(logits.reduce((a, l) => a + Math.exp(l - m), 0));
}

function run(ts: TrainingSet, t: number, x = queries): number[][] {
  const xt = tf.tensor2d(x, [x.length / dim, dim]);
  const d = ts.denoise(xt, t);
  const out = d.arraySync();
  tf.dispose([xt, d]);
  return out;
}

describe('optimal denoiser D*', () => {
  const ts = new TrainingSet(points, n, dim);

  it('tends to the data mean as sigma grows', () => {
    const mean = Array.from({ length: dim }, (_, k) => points.filter((_, i) => i % dim === k).reduce((a, b) => a + b, 0) / n);
    for (const row of run(ts, 1e4)) row.forEach((v, k) => expect(v).toBeCloseTo(mean[k]!, 3));
  });

  it('tends to the nearest training point as sigma shrinks', () => {
    const near = ts.nearest(queries, 4);
    run(ts, 1e-3).forEach((row, r) => row.forEach((v, k) => expect(v).toBeCloseTo(points[near.index[r]! * dim + k]!, 5)));
  });

  it('matches a float64 brute force at moderate sigma', () => {
    for (const t of [0.1, 0.5, 2]) {
      run(ts, t).forEach((row, r) => {
        const ref = bruteOptimal(queries, r, t);
        row.forEach((v, k) => expect(Math.abs(v - ref[k]!)).toBeLessThan(2e-4));
      });
    }
  });

  it('is the same chunked and unchunked (streamed log-sum-exp), on the tensor path and against the native kernel', () => {
    const chunked = new TrainingSet(points, n, dim, { chunkSize: 7 });
    const native = nativeMatMulActive();
    // the tensor path streams over chunkSize points (the native kernel over its own blocks, whatever chunkSize)
    uninstallNativeMatMul();
    try {
      for (const t of [0.05, 0.3, 5]) {
        const a = run(ts, t);
        const b = run(chunked, t);
        a.forEach((row, r) => row.forEach((v, k) => expect(Math.abs(v - b[r]![k]!)).toBeLessThan(1e-5)));
        if (native) {
          installNativeMatMul(1);
          const c = run(chunked, t);
          uninstallNativeMatMul();
          a.forEach((row, r) => row.forEach((v, k) => expect(Math.abs(v - c[r]![k]!)).toBeLessThan(1e-5)));
        }
      }
    } finally {
      if (native) installNativeMatMul(1);
      chunked.dispose();
    }
  });

  it('refuses a sigma whose 1 / sigma^2 overflows float32, naming it', () => {
    const x = tf.tensor2d(queries, [4, dim]);
    expect(() => ts.denoise(x, 1e-25)).toThrow(/sigma 1e-25 is too small/);
    x.dispose();
  });

  it('does not leak device memory per evaluation', () => {
    run(ts, 0.5);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) run(ts, 0.5);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('training-set kernel metrics', () => {
  const ts = new TrainingSet(points, n, dim, { chunkSize: 64 });

  it('KDE gain equals the float64 difference of log densities', () => {
    const next = Float32Array.from(queries, (v, i) => v * 0.8 + 0.05 * (i % 3));
    const x = tf.tensor2d(queries, [4, dim]);
    const xn = tf.tensor2d(next, [4, dim]);
    for (const t of [0.3, 1, 4]) {
      const gain = ts.kdeGain(x, xn, queries, next, t);
      for (let r = 0; r < 4; r++) {
        const ref = bruteLogKde(next.subarray(r * dim, (r + 1) * dim), t) - bruteLogKde(queries.subarray(r * dim, (r + 1) * dim), t);
        expect(Math.abs(gain[r]! - ref)).toBeLessThan(1e-3 * Math.max(1, Math.abs(ref)));
      }
    }
    tf.dispose([x, xn]);
  });

  it.runIf(nativeMatMulActive())('with native products: denoiser and metrics read the host copy of the points, and KDE gains are the same bits with or without the cached logits', () => {
    for (const rows of [4, 30]) {
      // a narrow batch (the tensor path would take the pre-transposed copy) and a wide one
      const xq = Float32Array.from(normalStream(21, 0, rows * dim).map((v) => 2 * v));
      const xn = Float32Array.from(xq, (v, i) => v * 0.8 + 0.05 * (i % 3));
      const x = tf.tensor2d(xq, [rows, dim]);
      const xnT = tf.tensor2d(xn, [rows, dim]);
      const before = tf.memory().numBytes;
      const fresh = new TrainingSet(points, n, dim, { chunkSize: 64 });
      fresh.cacheLogits = true;
      for (const t of [0.05, 0.3, 1, 4]) {
        fresh.denoise(x, t).dispose();
        const cached = fresh.takeLogits(x, t);
        expect(cached).not.toBeNull();
        const withCache = fresh.kdeGain(x, xnT, xq, xn, t, cached);
        fresh.releaseLogits(cached);
        const without = fresh.kdeGain(x, xnT, xq, xn, t);
        expect(Array.from(without)).toEqual(Array.from(withCache));
        for (let r = 0; r < rows; r++) {
          const ref = bruteLogKde(xn.subarray(r * dim, (r + 1) * dim), t) - bruteLogKde(xq.subarray(r * dim, (r + 1) * dim), t);
          expect(Math.abs(without[r]! - ref)).toBeLessThan(1e-3 * Math.max(1, Math.abs(ref)));
        }
      }
      const near = fresh.nearest(xq, rows);
      // the norms ||y_j||^2 / 2 alone: no device copy of the points
      expect(tf.memory().numBytes - before).toBe(4 * n);
      // the tensor path (wasm's own product, the points uploaded) finds the same neighbours at the same distances
      uninstallNativeMatMul();
      try {
        expect(fresh.nearest(xq, rows)).toEqual(near);
        expect(tf.memory().numBytes - before).toBeGreaterThanOrEqual(4 * n + 4 * n * dim);
      } finally {
        installNativeMatMul(1);
      }
      fresh.dispose();
      expect(tf.memory().numBytes).toBe(before);
      // pruning's set-up projects the points on the host too, and its evaluations read them there
      const pruned = new TrainingSet(points, n, dim, { pruning: { rank: 3 } });
      const pcaBytes = 4 * (dim + dim * 3); // the mean and the axes
      expect(tf.memory().numBytes - before).toBe(4 * n + pcaBytes);
      for (const t of [0.05, 1]) pruned.denoise(x, t).dispose();
      expect(tf.memory().numBytes - before).toBe(4 * n + pcaBytes);
      pruned.dispose();
      tf.dispose([x, xnT]);
    }
  });

  it.runIf(nativeMatMulActive())('with native products: logits buffers given back are reused by later evaluations, never shared by two live ones', () => {
    const rows = 6;
    const xq = Float32Array.from(normalStream(23, 0, rows * dim));
    const x = tf.tensor2d(xq, [rows, dim]);
    const pooled = new TrainingSet(points, n, dim, { chunkSize: 64 });
    const plain = new TrainingSet(points, n, dim, { chunkSize: 64 });
    pooled.cacheLogits = plain.cacheLogits = true;
    const take = (ts: TrainingSet, t: number) => {
      ts.denoise(x, t).dispose();
      const l = ts.takeLogits(x, t)!;
      expect(l).toHaveLength(Math.ceil(n / 64));
      return l as Float32Array[];
    };
    const first = take(pooled, 1);
    pooled.releaseLogits(first);
    pooled.releaseLogits(first); // a second release of the same buffers changes nothing
    const second = take(pooled, 2);
    const third = take(pooled, 3); // taken while `second` is still held
    expect(second.some((a) => first.includes(a))).toBe(true);
    for (const a of third) expect(second.includes(a)).toBe(false);
    expect(new Set([...second, ...third]).size).toBe(second.length + third.length);
    // the reused buffers hold exactly the logits a set without reuse computes
    for (const [t, got] of [[2, second], [3, third]] as const) {
      const want = take(plain, t);
      got.forEach((a, ci) => expect(Array.from(a)).toEqual(Array.from(want[ci]!)));
    }
    // a buffer dropped from the cache (not taken) goes back too: the next evaluation's logits reuse it
    pooled.releaseLogits([...second, ...third]);
    pooled.denoise(x, 4).dispose(); // cached, not taken
    pooled.denoise(x, 5).dispose(); // drops the t = 4 logits
    const fifth = pooled.takeLogits(x, 5) as Float32Array[];
    for (const a of fifth) expect([...second, ...third].includes(a)).toBe(true);
    expect(pooled.takeLogits(x, 4)).toBeNull();
    tf.dispose(x);
    pooled.dispose();
    plain.dispose();
  });

  it('nearest and second-nearest match brute force', () => {
    const res = ts.nearest(queries, 4);
    for (let r = 0; r < 4; r++) {
      const d = Array.from({ length: n }, (_, j) => {
        let s = 0;
        for (let k = 0; k < dim; k++) s += (queries[r * dim + k]! - points[j * dim + k]!) ** 2;
        return [Math.sqrt(s), j] as const;
      }).sort((a, b) => a[0] - b[0]);
      expect(res.index[r]).toBe(d[0]![1]);
      expect(res.dist[r]).toBeCloseTo(d[0]![0], 10);
      expect(res.dist2[r]).toBeCloseTo(d[1]![0], 10);
    }
  });
});

describe('analytic denoisers', () => {
  it('Gaussian: D = mu + U diag(l / (l + t^2)) U^T (x - mu), low rank included', () => {
    const data = gaussianDataset({ dim: 4, rank: 2, n: 10, seed: 3, meanScale: 1 });
    const g = data.analytic;
    if (g?.kind !== 'gaussian') throw new Error('expected gaussian');
    const d = gaussianDenoiser(g);
    const x = tf.tensor2d(queries.subarray(0, 8), [2, 4]);
    for (const t of [0.1, 1, 10]) {
      const out = d.denoise(x, t).arraySync();
      out.forEach((row, r) => {
        const diff = Array.from({ length: 4 }, (_, a) => queries[r * 4 + a]! - g.mean[a]!);
        const coords = Array.from({ length: 2 }, (_, k) => diff.reduce((acc, v, a) => acc + v * g.basis[a * 2 + k]!, 0) * (g.eigenvalues[k]! / (g.eigenvalues[k]! + t * t)));
        row.forEach((v, a) => expect(v).toBeCloseTo(g.mean[a]! + coords.reduce((acc, c, k) => acc + c * g.basis[a * 2 + k]!, 0), 4));
      });
    }
    d.dispose();
    x.dispose();
  });

  it('Gaussian fitted to many samples recovers the generating covariance spectrum', () => {
    const data = gaussianDataset({ dim: 3, n: 20000, seed: 5, decay: 1, scale: 2 });
    const fit = fitGaussian(data.points, data.n, data.dim);
    expect(fit.rank).toBe(3);
    [2, 1, 2 / 3].forEach((l, k) => expect(Math.abs(fit.eigenvalues[k]! - l) / l).toBeLessThan(0.05));
  });

  it('GMM: matches a float64 brute force of the smoothed mixture posterior mean', () => {
    const data = gmmDataset({ dim: 3, components: 4, n: 10, seed: 2, covariance: 'diagonal', weights: 'random' });
    const g = data.analytic;
    if (g?.kind !== 'gmm') throw new Error('expected gmm');
    const d = gmmDenoiser(g);
    const xs = Float32Array.from(normalStream(9, 0, 9).map((v) => 3 * v));
    const x = tf.tensor2d(xs, [3, 3]);
    for (const t of [0.05, 0.7, 6]) {
      const out = d.denoise(x, t).arraySync();
      out.forEach((row, r) => {
        const logr = Array.from({ length: 4 }, (_, k) => {
          let s = Math.log(g.weights[k]!);
          for (let a = 0; a < 3; a++) {
            const v = g.variances[k * 3 + a]! + t * t;
            s += -0.5 * ((xs[r * 3 + a]! - g.means[k * 3 + a]!) ** 2 / v + Math.log(2 * Math.PI * v));
          }
          return s;
        });
        const m = Math.max(...logr);
        const w = logr.map((l) => Math.exp(l - m));
        const z = w.reduce((a, b) => a + b, 0);
        row.forEach((v, a) => {
          const ref = w.reduce((acc, wk, k) => {
            const vk = g.variances[k * 3 + a]!;
            return acc + (wk / z) * (g.means[k * 3 + a]! + (vk / (vk + t * t)) * (xs[r * 3 + a]! - g.means[k * 3 + a]!));
          }, 0);
          expect(Math.abs(v - ref)).toBeLessThan(1e-4 * Math.max(1, Math.abs(ref)));
        });
      });
    }
    d.dispose();
    x.dispose();
  });
});
