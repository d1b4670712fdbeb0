import * as tf from '@tensorflow/tfjs-core';
import { installNativeMatMul, nativeMatMulActive, uninstallNativeMatMul } from '@trajlab/backend';
import { normalStream, polynomialSigmas } from '@trajlab/core';
import { datasetContentHash, loadIdxFile } from '@trajlab/datasets';
import { PRUNING_RECIPE, pruningTablesPath, readPruningTables, TrainingSet } from '@trajlab/denoisers';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrowFiles, cliAsync, tempDir, writeSpec } from './helpers.js';

const FMNIST = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';

/** Max |pruned - dense| over a batch of noisy training points at each sigma of a 12-step schedule. */
function compare(points: Float32Array, n: number, dim: number, tolerance: number, rank = 16) {
  const dense = new TrainingSet(points, n, dim, { chunkSize: 700 });
  const pruned = new TrainingSet(points, n, dim, { chunkSize: 700, pruning: { rank, tolerance } });
  let maxNorm = 0;
  for (let i = 0; i < n * dim; i += dim) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += points[i + k]! ** 2;
    maxNorm = Math.max(maxNorm, Math.sqrt(s));
  }
  const out: { sigma: number; diff: number; kept: number }[] = [];
  const B = 12;
  const z = normalStream(5, 0, B * dim);
  for (const t of polynomialSigmas(12, 0.002, 80)) {
    const q = new Float32Array(B * dim);
    for (let r = 0; r < B; r++) for (let k = 0; k < dim; k++) q[r * dim + k] = points[((r * 37) % n) * dim + k]! + t * z[r * dim + k]!;
    const x = tf.tensor2d(q, [B, dim]);
    const before = { ...pruned.pruningStats };
    const a = dense.denoise(x, t).dataSync();
    const b = pruned.denoise(x, t).dataSync();
    let diff = 0;
    for (let j = 0; j < a.length; j++) diff = Math.max(diff, Math.abs(a[j]! - b[j]!));
    out.push({ sigma: t, diff, kept: (pruned.pruningStats.pointsKept - before.pointsKept) / (pruned.pruningStats.pointsTotal - before.pointsTotal) });
    x.dispose();
  }
  dense.dispose();
  pruned.dispose();
  return { out, maxNorm };
}

/**
 * Both implementations: with native products the bounds, scan and kept rows run in native/pruned_denoiser.c; without
 * them (TRAJLAB_BLAS=off, or no binding) in tensors. The dense reference uses the same matrix product as each.
 */
const NATIVE_AT_START = nativeMatMulActive();
describe.each([
  { path: 'native kernel', native: true },
  { path: 'tensor path', native: false },
])('certified pruning of the optimal denoiser ($path)', ({ native }) => {
  beforeAll(() => {
    if (!native) uninstallNativeMatMul();
  });
  afterAll(() => {
    if (!native && NATIVE_AT_START) installNativeMatMul();
  });

  it.skipIf(native && !NATIVE_AT_START)('agrees with the dense denoiser within the tolerance at every sigma (random data), and prunes at small sigma', () => {
    expect(nativeMatMulActive()).toBe(native);
    const n = 2000;
    const dim = 24;
    // data on a low-dimensional curved set plus noise: PCA captures most of the distance
    const base = normalStream(3, 0, n * 4);
    const noise = normalStream(4, 0, n * dim);
    const pts = new Float32Array(n * dim);
    for (let i = 0; i < n; i++) for (let k = 0; k < dim; k++) pts[i * dim + k] = Math.sin((k + 1) * base[i * 4 + (k % 4)]!) + 0.05 * noise[i * dim + k]!;
    for (const tol of [1e-7, 1e-3]) {
      const { out, maxNorm } = compare(pts, n, dim, tol);
      for (const o of out) {
        // skipped weight <= tol * largest weight: D moves by at most ~2 tol max||y||, plus float32 rounding
        expect(o.diff, `sigma ${o.sigma}`).toBeLessThan(2 * tol * maxNorm + 1e-5 * Math.max(1, maxNorm));
      }
      expect(out[0]!.kept).toBe(1); // sigma 80: nothing can be skipped
      expect(out[out.length - 1]!.kept).toBeLessThan(0.05); // sigma 0.002: almost everything is
    }
  });

  it.skipIf(!existsSync(FMNIST) || (native && !NATIVE_AT_START))('agrees with the dense denoiser on Fashion-MNIST at every sigma', () => {
    expect(nativeMatMulActive()).toBe(native);
    const data = loadIdxFile(FMNIST, { limit: 2000 });
    const { out, maxNorm } = compare(data.points, data.n, data.dim, 1e-7, 32);
    for (const o of out) expect(o.diff, `sigma ${o.sigma}`).toBeLessThan(2e-7 * maxNorm + 1e-5 * maxNorm);
    expect(out[out.length - 1]!.kept).toBeLessThan(0.05);
    // report how much is skipped along the schedule (visible in the test log)
    process.stderr.write(`pruning (${native ? 'native' : 'tensors'}) on Fashion-MNIST 2000: kept fraction by sigma ${out.map((o) => `${o.sigma.toPrecision(3)}:${o.kept.toFixed(3)}`).join(' ')}\n`);
  });
});

describe.skipIf(!NATIVE_AT_START)('certified pruning with native products', () => {
  it('a row gets the same bits alone as in any batch (pruned, dense and mixed rows), at every sigma', () => {
    const n = 1500;
    const dim = 16;
    const base = normalStream(7, 0, n * 3);
    const pts = Float32Array.from({ length: n * dim }, (_, i) => Math.cos((1 + (i % dim)) * base[Math.floor(i / dim) * 3 + (i % 3)]!));
    const ts = new TrainingSet(pts, n, dim, { chunkSize: 600, pruning: { rank: 8, tolerance: 1e-7 } });
    const z = normalStream(8, 0, 10 * dim);
    for (const t of polynomialSigmas(10, 0.002, 80)) {
      // rows at different distances from the data, so one batch mixes rows that are pruned and rows that are not
      const q = Float32Array.from({ length: 10 * dim }, (_, i) => pts[((Math.floor(i / dim) * 131) % n) * dim + (i % dim)]! + t * (1 + Math.floor(i / dim)) * z[i]!);
      const x = tf.tensor2d(q, [10, dim]);
      const batch = ts.denoise(x, t).dataSync();
      for (const r of [0, 3, 9]) {
        const xr = tf.slice(x, [r, 0], [1, dim]);
        const alone = ts.denoise(xr, t).dataSync();
        expect(Array.from(alone), `sigma ${t}, row ${r}`).toEqual(Array.from(batch.slice(r * dim, (r + 1) * dim)));
        xr.dispose();
      }
      x.dispose();
    }
    ts.dispose();
  });
});


describe.skipIf(!NATIVE_AT_START)("certified pruning's tables kept on disk between processes", () => {
  const n = 1200;
  const dim = 20;
  const base = normalStream(21, 0, n * 4);
  const pts = Float32Array.from({ length: n * dim }, (_, i) => Math.sin((1 + (i % dim)) * base[Math.floor(i / dim) * 4 + (i % 4)]!));
  const pruning = { rank: 6, tolerance: 1e-7 };
  const cacheOf = (dir: string, points = pts) => ({ dir, contentHash: datasetContentHash(points, n, dim) });

  /** D* of noisy training points at every sigma of a schedule, concatenated. */
  function evaluations(ts: TrainingSet): number[] {
    const z = normalStream(22, 0, 8 * dim);
    const out: number[] = [];
    for (const t of polynomialSigmas(10, 0.002, 80)) {
      const x = tf.tensor2d(Float32Array.from({ length: 8 * dim }, (_, i) => pts[((Math.floor(i / dim) * 97) % n) * dim + (i % dim)]! + t * z[i]!), [8, dim]);
      const d = ts.denoise(x, t);
      out.push(...d.dataSync());
      tf.dispose([x, d]);
    }
    return out;
  }

  it('a second training set over the same points reads the tables the first wrote, and evaluates bit for bit alike', () => {
    const dir = tempDir();
    const uncached = new TrainingSet(pts, n, dim, { pruning });
    const first = new TrainingSet(pts, n, dim, { pruning, pruningCache: cacheOf(dir) });
    expect(first.pruningTablesRead).toBe(false);
    expect(existsSync(pruningTablesPath(cacheOf(dir), n, dim, pruning.rank, PRUNING_RECIPE))).toBe(true);
    const second = new TrainingSet(pts, n, dim, { pruning, pruningCache: cacheOf(dir) });
    expect(second.pruningTablesRead).toBe(true);
    const expected = evaluations(uncached);
    expect(evaluations(first)).toEqual(expected);
    expect(evaluations(second)).toEqual(expected);
    // the same bounds: the same points kept in every evaluation, and some pruned
    expect(second.pruningStats).toEqual(uncached.pruningStats);
    expect(second.pruningStats.pointsKept).toBeLessThan(second.pruningStats.pointsTotal);
    for (const ts of [uncached, first, second]) ts.dispose();
  });

  it('a damaged or truncated file is not used: the tables are computed again and the file replaced', () => {
    const dir = tempDir();
    const file = pruningTablesPath(cacheOf(dir), n, dim, pruning.rank, PRUNING_RECIPE);
    new TrainingSet(pts, n, dim, { pruning, pruningCache: cacheOf(dir) }).dispose();
    const intact = readFileSync(file);
    const uncached = new TrainingSet(pts, n, dim, { pruning });
    const expected = evaluations(uncached);
    uncached.dispose();
    const damaged = Buffer.from(intact);
    damaged[damaged.length - 5] = damaged[damaged.length - 5]! ^ 0x40; // one bit of the bound table
    for (const bytes of [damaged, intact.subarray(0, intact.length - 4), Buffer.from('not a table\n')]) {
      writeFileSync(file, bytes);
      const ts = new TrainingSet(pts, n, dim, { pruning, pruningCache: cacheOf(dir) });
      expect(ts.pruningTablesRead).toBe(false);
      expect(evaluations(ts)).toEqual(expected);
      ts.dispose();
      expect(readFileSync(file).equals(intact)).toBe(true);
    }
  });

  it("another rank, other points or another recipe are another file; a file under another set's name is refused", () => {
    const dir = tempDir();
    new TrainingSet(pts, n, dim, { pruning, pruningCache: cacheOf(dir) }).dispose();
    const other = Float32Array.from(pts, (v, i) => (i === 0 ? v + 1 : v));
    const names = [
      pruningTablesPath(cacheOf(dir), n, dim, pruning.rank, PRUNING_RECIPE),
      pruningTablesPath(cacheOf(dir), n, dim, pruning.rank + 1, PRUNING_RECIPE),
      pruningTablesPath(cacheOf(dir, other), n, dim, pruning.rank, PRUNING_RECIPE),
      pruningTablesPath(cacheOf(dir), n, dim, pruning.rank, `${PRUNING_RECIPE} changed`),
    ];
    expect(new Set(names).size).toBe(4);
    const ts = new TrainingSet(pts, n, dim, { pruning: { ...pruning, rank: pruning.rank + 1 }, pruningCache: cacheOf(dir) });
    expect(ts.pruningTablesRead).toBe(false);
    ts.dispose();
    // the first set's file renamed to the other points' name: its header names the first set's content hash
    copyFileSync(names[0]!, names[2]!);
    expect(readPruningTables(cacheOf(dir, other), n, dim, pruning.rank, PRUNING_RECIPE)).toBeNull();
    expect(readPruningTables(cacheOf(dir), n, dim, pruning.rank, PRUNING_RECIPE)).not.toBeNull();
  });

  it('without native products nothing is kept on disk (other kernels may round differently on another machine)', () => {
    const dir = tempDir();
    uninstallNativeMatMul();
    try {
      const ts = new TrainingSet(pts, n, dim, { pruning, pruningCache: cacheOf(dir) });
      expect(ts.pruningTablesRead).toBe(false);
      ts.dispose();
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      installNativeMatMul();
    }
  });

  it('trajlab run keeps them in the data cache: a second run reads them and writes the same bytes, as does one after they are damaged', async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, {
      name: 'pruning-cache',
      samples: 8,
      shardSize: 4,
      dataset: { kind: 'gmm', dim: 12, components: 5, n: 900, seed: 3 },
      denoiser: { kind: 'optimal', pruning: { rank: 4, tolerance: 1e-7 } },
      solvers: [{ solver: 'heun', steps: 8 }],
      keepStates: 2,
    });
    const env = { ...process.env, TRAJLAB_DATA_CACHE: join(dir, 'cache') };
    const runs: string[] = [];
    for (const out of ['cold', 'warm', 'damaged']) {
      if (out === 'damaged') {
        const [file] = readdirSync(join(dir, 'cache', 'pruning'));
        const bytes = readFileSync(join(dir, 'cache', 'pruning', file!));
        bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
        writeFileSync(join(dir, 'cache', 'pruning', file!), bytes);
      }
      const r = await cliAsync(['run', spec, '--out', join(dir, out), '--workers', '1', '--quiet'], { env });
      expect(r.status, r.stderr).toBe(0);
      runs.push(join(dir, out, /study\s+(\S+)/.exec(r.stdout)![1]!));
      expect(readdirSync(join(dir, 'cache', 'pruning')).filter((f) => f.endsWith('.f32'))).toHaveLength(1);
    }
    const files = arrowFiles(runs[0]!);
    expect(files.length).toBeGreaterThan(4);
    for (const run of runs.slice(1)) for (const f of files) expect(readFileSync(join(run, f)).equals(readFileSync(join(runs[0]!, f))), f).toBe(true);
  });
});
