import * as tf from '@tensorflow/tfjs-core';
import { activeNativeBlas, nativeMatMulActive, type NativeBlas } from '@trajlab/backend';
import { SUBSPACE_ITERATIONS, SUBSPACE_MAX_POINTS, topAxesBySubspaceIteration } from './pca.js';
import { readPruningTables, writePruningTables, type PruningTables, type PruningTablesCache } from './pruning-tables.js';
import { kdeChunkSums } from './kde-sums.js';

/** One slice of the training set kept on the device in both layouts the kernels need. */
interface Chunk {
  /** First training index of the chunk. */
  start: number;
  size: number;
  /**
   * [size, dim]: right operand of weights x points, and (transposed) of x . y_j with native products; made on first use
   * (see pointsOf): the native dense kernel reads the host copy, so a study that needs no tensor product with the
   * points never holds this second copy of the training set.
   */
  y: tf.Tensor2D | null;
  /**
   * [dim, size]: pre-transposed right operand of x . y_j for wasm's own kernel, whose transposeB path is slow, and for
   * narrow batches with native products; made on first use (see dots).
   */
  yt: tf.Tensor2D | null;
  /** [1, size]: ||y_j||^2 / 2, cached. */
  halfNorm: tf.Tensor2D;
}

/** Training points per chunk when none is given: the optimal denoiser streams its softmax over chunks of this size. */
export const DEFAULT_CHUNK_SIZE = 16384;

/** One chunk's logits of an evaluation: a device tensor (tensor path) or a host array [B, size] (native products). */
export type ChunkLogits = tf.Tensor2D | Float32Array;

/** Evaluations' worth of host logits buffers a TrainingSet keeps for reuse: the held, the cached and a spare. */
const LOGITS_POOL = 3;

/** The values of a chunk's logits on the host (a tensor's are read back; a host array is itself). */
function hostArray(l: ChunkLogits): Float32Array {
  return l instanceof Float32Array ? l : (l.dataSync() as Float32Array);
}

/** Batches below this many rows take the pre-transposed training set with native products (see dots). */
const NARROW_BATCH = 24;

/**
 * Rows that keep at most this fraction of the points are computed row by row, the others densely: the native kernel's
 * per-row products (pruned_denoiser.c) pay off up to n / 16 points per row, the tensor path's batched gathers up to
 * n / 32 (measured on Fashion-MNIST 10k, batch 32).
 */
const NATIVE_ROW_FRACTION = 1 / 16;
const TENSOR_ROW_FRACTION = 1 / 32;

/** Relative float32 rounding margin subtracted from the expanded-form distance bounds of certified pruning. */
const LB_MARGIN = 1e-5;

/** Relative margin of the squared residual radius, which comes from a difference of squared norms (see pruningTables). */
const RESIDUAL_MARGIN = 1e-4;

/**
 * How certified pruning's tables are computed (TrainingSet.pruningTables), as far as their bits depend on it: tables
 * kept on disk are filed under it (pruning-tables.ts), so a change here is never served tables made the old way. Bump
 * its version whenever that computation changes in a way its parameters below do not show.
 */
export const PRUNING_RECIPE = `v1; axes: subspace iteration, ${SUBSPACE_ITERATIONS} iterations over at most ${SUBSPACE_MAX_POINTS} points; margins ${LB_MARGIN}, ${RESIDUAL_MARGIN}; products: native row-stable sgemm`;

/** Nearest and second-nearest training points of a batch of query points. */
export interface NearestResult {
  index: Int32Array;
  dist: Float64Array;
  /** NaN when the training set has one point. */
  dist2: Float64Array;
}

/** Certified pruning of the optimal denoiser (off unless given). */
export interface PruningOptions {
  /** Principal directions of the training set used for the lower bound. @defaultValue 32 */
  rank?: number;
  /** Bound on the total weight of the skipped points relative to the largest weight. @defaultValue 1e-7 */
  tolerance?: number;
}

/** Counters of the pruned evaluations (rows = queries evaluated). */
export interface PruningStats {
  rows: number;
  /** Training points whose weight was computed, summed over rows. */
  pointsKept: number;
  /** Training points there were, summed over rows. */
  pointsTotal: number;
}

/** Options of the training-set kernel. */
export interface TrainingSetOptions {
  /**
   * Certified pruning for small sigma: points whose weight is provably below tolerance / n times the largest are
   * skipped (see denoise). Results stay within the tolerance of the dense computation but are not bit-identical to it.
   * @defaultValue off
   */
  pruning?: PruningOptions;
  /**
   * Training points per chunk: kernels stream over chunks with a running log-sum-exp, so device memory for a batch of B
   * queries is O(B * chunkSize) whatever the dataset size. @defaultValue 16384
   */
  chunkSize?: number;
  /**
   * Where certified pruning's tables may be kept between processes (pruning-tables.ts): read from there when a process
   * made them before for the same points (content hash), rank and recipe, else computed and written there. Used only
   * with native products. @defaultValue none: computed by every TrainingSet
   */
  pruningCache?: PruningTablesCache;
}

/**
 * A finite training set {y_j} on the device, with the Gaussian-kernel computations of the paper's mean-shift analysis:
 * the optimal denoiser D*(x; t) = sum_j softmax_j(-||x - y_j||^2 / (2 t^2)) y_j, the change of the kernel density
 * estimate at bandwidth t between two points, and nearest neighbours.
 */
export class TrainingSet {
  readonly n: number;
  readonly dim: number;
  readonly chunkSize: number;
  private readonly chunks: Chunk[] = [];
  private readonly pca: {
    mean: tf.Tensor2D;
    basis: tf.Tensor2D;
    /**
     * Per chunk, [rank + 2, size]: the columns (-2 p_j, 1, (1 - 1e-5) ||p_j||^2) with p_j = P^T (y_j - mean), so that one
     * product with the query rows (P^T (x - mean), (1 - 1e-5) ||P^T (x - mean)||^2, 1) gives every lower bound at once
     * (the tensor path; see boundTables).
     */
    bounds: tf.Tensor2D[] | null;
    /** Largest ||P^T (y_j - mean)||: the set's radius within the axes (the tests that skip the bounds). */
    maxProjected: number;
    /** Largest ||(I - P P^T) (y_j - mean)||: the set's radius across the axes (native kernel's cheap test). */
    maxResidual: number;
    /** The mean [dim], axes [dim, rank] and the bound tables side by side, [rank + 2, n], on the host (native kernel). */
    meanHost: Float32Array;
    basisHost: Float32Array;
    tableHost: Float32Array;
    tolerance: number;
    rank: number;
  } | null = null;
  /** Keep the logits of the latest dense evaluation for the metrics (see takeLogits). @defaultValue false */
  cacheLogits = false;
  private cached: { xId: number; t: number; logits: ChunkLogits[] } | null = null;
  /**
   * Host logits buffers given back by releaseLogits, reused by the next evaluations: with native products every
   * evaluation keeps [B, n] float32 logits for the metrics (1.3 MB at B = 32, n = 10k), and fresh ones each time
   * were garbage enough to make V8 collect every ~0.1 s (its external-memory trigger). At most LOGITS_POOL
   * evaluations' worth (with several chunks, an evaluation's logits are one array per chunk plus the whole [B, n]).
   */
  private readonly logitsPool: Float32Array[] = [];
  /** The KDE gain's delta . y_j products, one chunk at a time, reused from one call to the next. */
  private dotsScratch = new Float32Array(0);
  /**
   * Products with the training set made by the metrics (kdeGain, nearest) so far, one per chunk and pass over its
   * points, on either path: what reusing the denoiser's logits saves shows here.
   */
  metricProducts = 0;
  /** Whether certified pruning's tables were read from the pruningCache rather than computed here. */
  readonly pruningTablesRead: boolean = false;
  /** Pruning counters (zeros without pruning). */
  readonly pruningStats: PruningStats = { rows: 0, pointsKept: 0, pointsTotal: 0 };
  /**
   * Host buffer the kept points of pruned rows are copied into, reused from one group to the next (tens of MB per
   * evaluation at mid sigma would otherwise be garbage for the collector); each tensor made from it is disposed before
   * it is written again.
   */
  private keptScratch = new Float32Array(0);
  /** ||y_j||^2 / 2 of every point on the host (the same float32 values as the chunks'), for the pruned rows. */
  private readonly halfNormHost: Float32Array;

  /** `points` is row-major [n, dim] float32; a host copy is kept for exact distance checks. */
  constructor(
    readonly points: Float32Array,
    n: number,
    dim: number,
    opts: TrainingSetOptions = {},
  ) {
    if (points.length !== n * dim) throw new Error(`training set has ${points.length} values, expected n*dim = ${n}*${dim}`);
    this.n = n;
    this.dim = dim;
    this.chunkSize = Math.max(1, Math.floor(opts.chunkSize ?? DEFAULT_CHUNK_SIZE));
    // ||y_j||^2 / 2 on the host in float64, rounded once to float32: the logits' norm term (one pass over the points,
    // instead of a squared copy of the set on the device)
    this.halfNormHost = new Float32Array(n);
    for (let j = 0, o = 0; j < n; j++, o += dim) {
      let s = 0;
      for (let k = 0; k < dim; k++) s += points[o + k]! * points[o + k]!;
      this.halfNormHost[j] = 0.5 * s;
    }
    for (let start = 0; start < n; start += this.chunkSize) {
      const size = Math.min(this.chunkSize, n - start);
      const halfNorm = tf.tensor2d(this.halfNormHost.subarray(start, start + size), [1, size], 'float32');
      this.chunks.push({ start, size, y: null, yt: null, halfNorm });
    }
    if (opts.pruning) {
      const rank = Math.min(opts.pruning.rank ?? 32, dim, n);
      const native = activeNativeBlas();
      // kept on disk only where the products are the native row-stable kernel, whose bits are the same on every
      // machine and instruction set (wasm's own and tfjs-node's kernels may differ from one machine to another)
      const cache = native ? opts.pruningCache : undefined;
      let tables = cache ? readPruningTables(cache, n, dim, rank, PRUNING_RECIPE) : null;
      this.pruningTablesRead = tables !== null;
      if (!tables) {
        tables = this.pruningTables(native, rank);
        if (cache) writePruningTables(cache, n, dim, rank, PRUNING_RECIPE, tables);
      }
      this.pca = {
        mean: tf.tensor2d(tables.mean, [1, dim]),
        basis: tf.tensor2d(tables.basis, [dim, rank]),
        bounds: null,
        maxProjected: tables.maxProjected,
        maxResidual: tables.maxResidual,
        meanHost: tables.mean,
        basisHost: tables.basis,
        tableHost: tables.table,
        tolerance: opts.pruning.tolerance ?? 1e-7,
        rank,
      };
    }
  }

  /** Certified pruning's host tables for this training set at `rank` (see PRUNING_RECIPE before changing them). */
  private pruningTables(native: NativeBlas | null, rank: number): PruningTables {
    const { points, n, dim } = this;
    const { mean, basis } = topAxesBySubspaceIteration(points, n, dim, rank);
    // p_j = P^T (y_j - mean) in float32, as the queries' projections are computed: with native products on the host
    // copy, a block of points at a time (the same bits: float32 differences, then the row-stable product), else on
    // the device
    const projected = native ? projectOnHost(native, points, n, dim, mean, basis, rank) : new Float32Array(n * rank);
    if (!native) {
      const meanT = tf.tensor2d(mean, [1, dim]);
      const basisT = tf.tensor2d(basis, [dim, rank]);
      for (const c of this.chunks) {
        const p = tf.tidy(() => tf.matMul(tf.sub(this.pointsOf(c), meanT), basisT));
        projected.set(p.dataSync(), c.start * rank);
        p.dispose();
      }
      tf.dispose([meanT, basisT]);
    }
    // the table's columns (-2 p_j, 1, (1 - LB_MARGIN) ||p_j||^2), the set's radius within the axes (max ||p_j||) and
    // across them (max ||(I - P P^T) (y_j - mean)||, from ||y_j - mean||^2 - ||p_j||^2 with a margin for rounding)
    const table = new Float32Array((rank + 2) * n);
    let maxNorm2 = 0;
    let maxResidual2 = 0;
    for (let j = 0; j < n; j++) {
      let pn = 0;
      for (let k = 0; k < rank; k++) {
        const v = projected[j * rank + k]!;
        pn += v * v;
        table[k * n + j] = -2 * v;
      }
      let whole = 0;
      for (let k = 0, o = j * dim; k < dim; k++) whole += (points[o + k]! - mean[k]!) ** 2;
      table[rank * n + j] = 1;
      table[(rank + 1) * n + j] = Math.fround(pn) * (1 - LB_MARGIN);
      maxNorm2 = Math.max(maxNorm2, pn);
      maxResidual2 = Math.max(maxResidual2, whole * (1 + RESIDUAL_MARGIN) - pn * (1 - RESIDUAL_MARGIN));
    }
    return { mean, basis, table, maxProjected: Math.sqrt(maxNorm2), maxResidual: Math.sqrt(Math.max(0, maxResidual2)) };
  }

  /** A chunk's points on the device, uploaded on first use (kept: that use may be inside the caller's tidy). */
  private pointsOf(c: Chunk): tf.Tensor2D {
    c.y ??= tf.keep(tf.tensor2d(this.points.subarray(c.start * this.dim, (c.start + c.size) * this.dim), [c.size, this.dim], 'float32'));
    return c.y;
  }

  /** The bound tables per chunk on the device ([rank + 2, size] slices of tableHost), for the tensor path; made on first use. */
  private boundTables(): tf.Tensor2D[] {
    const pca = this.pca!;
    pca.bounds ??= this.chunks.map((c) => {
      const slice = new Float32Array((pca.rank + 2) * c.size);
      for (let row = 0; row < pca.rank + 2; row++) slice.set(pca.tableHost.subarray(row * this.n + c.start, row * this.n + c.start + c.size), row * c.size);
      return tf.keep(tf.tensor2d(slice, [pca.rank + 2, c.size])); // kept: first made inside the caller's tidy
    });
    return pca.bounds;
  }

  /** The pruning settings in force, for study.json and the report. */
  get pruning(): { rank: number; tolerance: number } | null {
    return this.pca ? { rank: this.pca.rank, tolerance: this.pca.tolerance } : null;
  }

  /** Bytes of device memory held at most (both layouts plus norms). */
  get deviceBytes(): number {
    return 4 * (2 * this.n * this.dim + this.n);
  }

  /**
   * q . y_j for every point j of a chunk: [B, size]. Native products read y transposed (the product streams the
   * training set once while the queries stay in cache) except for batches of fewer than NARROW_BATCH rows, where the
   * untransposed copy wastes fewer vector lanes; both give the same bits (stable_gemm.h). wasm's own kernel always
   * takes the copy (its transposed path is slow).
   */
  private dots(q: tf.Tensor2D, c: Chunk): tf.Tensor2D {
    if (nativeMatMulActive() && q.shape[0] >= NARROW_BATCH) return tf.matMul(q, this.pointsOf(c), false, true);
    c.yt ??= tf.keep(tf.transpose(this.pointsOf(c)));
    return tf.matMul(q, c.yt);
  }

  /**
   * Logits (x . y_j - ||y_j||^2 / 2) / t^2 = -(||x - y_j||^2 - ||x||^2) / (2 t^2) of one chunk: [B, size], computed as
   * (x / t^2) . y_j - (||y_j||^2 / 2) / t^2 so that the only pass over [B, size] besides the product is one subtraction.
   */
  private logits(x: tf.Tensor2D, c: Chunk, invT2: number): tf.Tensor2D {
    return tf.tidy(() => tf.sub(this.dots(tf.mul(x, invT2), c), tf.mul(c.halfNorm, invT2)) as tf.Tensor2D);
  }

  /**
   * rows . y_j for every point j of a chunk ([B, size], host), with the native product on the host copy of the points:
   * the same bits as dots (the same row-stable kernel, whichever operand layout), without the points on the device.
   */
  private hostDots(native: NativeBlas, rows: Float32Array, B: number, c: Chunk, out = new Float32Array(B * c.size)): Float32Array {
    native.sgemm(false, true, B, c.size, this.dim, rows, this.points.subarray(c.start * this.dim, (c.start + c.size) * this.dim), out);
    return out;
  }

  /**
   * logits on the host with the native product: the tensor path's float32 operations one by one (x * f32(1 / t^2),
   * the product, minus f32(halfNorm_j * f32(1 / t^2))), so the same bits.
   */
  private hostLogits(native: NativeBlas, xHost: Float32Array, B: number, c: Chunk, invT2: number): Float32Array {
    const scale = Math.fround(invT2);
    const scaled = new Float32Array(xHost.length);
    for (let i = 0; i < xHost.length; i++) scaled[i] = xHost[i]! * scale;
    const out = this.hostDots(native, scaled, B, c);
    for (let j = 0; j < c.size; j++) {
      const norm = Math.fround(this.halfNormHost[c.start + j]! * scale);
      for (let r = 0; r < B; r++) out[r * c.size + j] = out[r * c.size + j]! - norm;
    }
    return out;
  }

  /**
   * The optimal (empirical Bayes) denoiser D*(x; t): a Gaussian-kernel mean-shift step with bandwidth t, computed in
   * float32 as a softmax streamed over chunks with a running maximum (online log-sum-exp), so no chunk ever overflows.
   */
  denoise(x: tf.Tensor2D, t: number): tf.Tensor2D {
    // the logits are scaled by 1 / t^2 in float32: past its range every weight would be NaN
    if (!Number.isFinite(Math.fround(1 / (t * t)))) throw new Error(`optimal denoiser: sigma ${t} is too small for float32 (1 / sigma^2 overflows); sigma must be at least 5.5e-20`);
    return this.pca ? this.denoisePruned(x, t) : this.denoiseDense(x, t);
  }

  /**
   * Certified pruning, row by row (so a row's result never depends on the other rows of its batch). With P the top
   * principal directions of the training set, ||P^T (x - y_j)|| <= ||x - y_j|| is a lower bound LB_j on every
   * distance, and the exact distance UB to the point of smallest LB is an upper bound on the nearest distance. Point j
   * has weight w_j / w_max <= exp(-(LB_j^2 - UB^2) / (2 t^2)); it is skipped when that is below tolerance / n, so the
   * skipped points carry at most `tolerance` times the largest weight in total. Rows that would keep more than a
   * fraction of the points (NATIVE_ROW_FRACTION, TENSOR_ROW_FRACTION) are computed densely (batched), which is faster
   * there. With native products the whole test runs in native/pruned_denoiser.c (denoisePrunedNative), which also
   * sends rows straight to the dense kernel when a bound on their spread within and across the axes shows that
   * nothing can be skipped; without them, here with tensors.
   */
  private denoisePruned(x: tf.Tensor2D, t: number): tf.Tensor2D {
    const native = activeNativeBlas();
    if (native) return this.denoisePrunedNative(native, x, t);
    const pca = this.pca!;
    const [B, dim] = x.shape;
    const xp = tf.tidy(() => tf.matMul(tf.sub(x, pca.mean), pca.basis)); // [B, rank]
    const xpNorm = tf.tidy(() => tf.sum(tf.square(xp), 1, true));
    const cutoff = 2 * t * t * Math.log(this.n / pca.tolerance);
    // Nothing can be skipped in a row when no two bounds differ by more than the cutoff (UB^2 >= min_m LB_m^2):
    // with p_j = P^T (y_j - mean), R = max_j ||p_j||, LB_j^2 - LB_m^2 = ||p_j||^2 - ||p_m||^2 - 2 (P^T x) . (p_j - p_m)
    // <= R^2 + 4 ||P^T x|| R. When that holds for every row the bounds are not worth computing (large sigma).
    const xpNormHost = xpNorm.dataSync();
    const R = pca.maxProjected;
    if (xpNormHost.every((v) => (R * R + 4 * Math.sqrt(v) * R) * (1 + 1e-5) <= cutoff)) {
      tf.dispose([xp, xpNorm]);
      this.pruningStats.rows += B;
      this.pruningStats.pointsTotal += B * this.n;
      this.pruningStats.pointsKept += B * this.n;
      return this.denoiseDense(x, t);
    }
    // Lower bounds per chunk in the expanded form ||P^T x||^2 - 2 (P^T x) . p_j + ||p_j||^2, loosened by a float32
    // rounding margin (1e-5 of the two squared norms) so that each stays certified, all from one product per chunk.
    const lbChunks = tf.tidy(() => {
      const q = tf.concat([xp, tf.mul(xpNorm, 1 - LB_MARGIN), tf.ones([B, 1])], 1);
      const tables = this.boundTables();
      return this.chunks.map((_, ci) => tf.matMul(q, tables[ci]!) as tf.Tensor2D);
    });
    tf.dispose([xp, xpNorm]);
    const xHost = x.dataSync();
    // per row: the point of smallest bound (its exact distance bounds the nearest distance from above: UB) and the
    // largest bound; if even that is within the cutoff of UB, nothing can be skipped in this row
    const stats = tf.tidy(() => {
      const all = lbChunks.length === 1 ? lbChunks[0]! : tf.concat(lbChunks, 1);
      return [tf.argMin(all, 1), tf.max(all, 1)] as tf.Tensor[];
    });
    const argmin = stats[0]!.dataSync();
    const lbMax = stats[1]!.dataSync();
    tf.dispose(stats);
    const ub2 = new Float64Array(B);
    for (let r = 0; r < B; r++) {
      const j = argmin[r]!;
      let s2 = 0;
      for (let k = 0; k < dim; k++) s2 += (xHost[r * dim + k]! - this.points[j * dim + k]!) ** 2;
      ub2[r] = s2;
    }
    const denseRows: number[] = [];
    const prunedRows: { row: number; keep: number[] }[] = [];
    const candidates: number[] = [];
    for (let r = 0; r < B; r++) {
      this.pruningStats.rows++;
      this.pruningStats.pointsTotal += this.n;
      if (lbMax[r]! - ub2[r]! <= cutoff) {
        denseRows.push(r);
        this.pruningStats.pointsKept += this.n;
      } else candidates.push(r);
    }
    if (candidates.length) {
      const lbHost = lbChunks.map((lb) => lb.dataSync());
      // Per-row work only pays off when few points remain (TENSOR_ROW_FRACTION); otherwise the row goes through the
      // batched dense kernel, and its scan stops as soon as it keeps too many.
      const maxKept = Math.floor(this.n * TENSOR_ROW_FRACTION);
      for (const r of candidates) {
        const keep: number[] = [];
        for (let ci = 0; ci < this.chunks.length && keep.length <= maxKept; ci++) {
          const c = this.chunks[ci]!;
          const lb = lbHost[ci]!;
          for (let j = 0, base = r * c.size; j < c.size && keep.length <= maxKept; j++) if (lb[base + j]! - ub2[r]! <= cutoff) keep.push(c.start + j);
        }
        if (keep.length > maxKept) {
          denseRows.push(r);
          this.pruningStats.pointsKept += this.n;
        } else {
          prunedRows.push({ row: r, keep });
          this.pruningStats.pointsKept += keep.length;
        }
      }
      denseRows.sort((a, b) => a - b);
    }
    tf.dispose(lbChunks);
    // no row pruned: the batched dense kernel on the whole batch (row results do not depend on the batch)
    if (prunedRows.length === 0) return this.denoiseDense(x, t);
    const result = new Array<tf.Tensor2D | null>(B).fill(null);
    if (denseRows.length) {
      const sub = tf.tidy(() => tf.gather(x, tf.tensor1d(denseRows, 'int32')) as tf.Tensor2D);
      const d = this.denoiseDense(sub, t);
      const parts = tf.split(d, denseRows.length, 0) as tf.Tensor2D[];
      denseRows.forEach((r, k) => (result[r] = parts[k]!));
      tf.dispose([sub, d]);
    }
    // Pruned rows are computed in groups of equal padded size K (the power of two >= the row's kept count, at least 8):
    // padding entries repeat a kept point with logit -inf (weight exactly 0). K depends only on the row itself, so a
    // row's result never depends on the other rows of its batch. The kept points are copied on the host (the device
    // gather is slow on wasm) and each row's two products are one batch entry of a batched matMul.
    const invT2 = 1 / (t * t);
    const groups = new Map<number, { row: number; keep: number[] }[]>();
    for (const pr of prunedRows) {
      const k = Math.max(8, 2 ** Math.ceil(Math.log2(pr.keep.length)));
      const group = groups.get(k);
      if (group) group.push(pr);
      else groups.set(k, [pr]);
    }
    for (const [K, members] of groups) {
      const G = members.length;
      if (this.keptScratch.length < G * K * dim) this.keptScratch = new Float32Array(G * K * dim);
      const ysHost = this.keptScratch.subarray(0, G * K * dim);
      const hnHost = new Float32Array(G * K);
      const mask = new Float32Array(G * K);
      members.forEach(({ keep }, g) => {
        for (let k = 0; k < K; k++) {
          const j = keep[Math.min(k, keep.length - 1)]!;
          ysHost.set(this.points.subarray(j * dim, (j + 1) * dim), (g * K + k) * dim);
          hnHost[g * K + k] = this.halfNormHost[j]!;
          mask[g * K + k] = k < keep.length ? 0 : Number.NEGATIVE_INFINITY;
        }
      });
      const rows = tf.tidy(() => {
        const ys = tf.tensor3d(ysHost, [G, K, dim]);
        const xs = tf.reshape(tf.gather(x, tf.tensor1d(members.map((m) => m.row), 'int32')), [G, dim, 1]);
        // the same logits as the dense kernel: (x / t^2) . y_j - (||y_j||^2 / 2) / t^2
        const dots = tf.reshape(tf.matMul(ys, tf.mul(xs, invT2)), [G, K]); // [G, K]
        const logits = tf.add(tf.sub(dots, tf.mul(tf.tensor2d(hnHost, [G, K]), invT2)), tf.tensor2d(mask, [G, K]));
        const w = tf.reshape(tf.softmax(logits, 1), [G, 1, K]);
        return tf.split(tf.reshape(tf.matMul(w, ys), [G, dim]) as tf.Tensor2D, G, 0) as tf.Tensor2D[];
      });
      members.forEach(({ row }, g) => (result[row] = rows[g]!));
    }
    const out = tf.concat(result as tf.Tensor2D[], 0) as tf.Tensor2D;
    tf.dispose(result as tf.Tensor2D[]);
    return out;
  }

  /**
   * denoisePruned with the native kernel (native/pruned_denoiser.c): the same bounds and cutoff, each row's bounds,
   * scan and kept points on the host in one call (a tenth of the tensor path's time at small sigma); the rows it
   * leaves go through the batched dense kernel.
   */
  private denoisePrunedNative(native: NativeBlas, x: tf.Tensor2D, t: number): tf.Tensor2D {
    const pca = this.pca!;
    const [B, dim] = x.shape;
    const out = new Float32Array(B * dim);
    const kept = new Int32Array(B);
    const cutoff = 2 * t * t * Math.log(this.n / pca.tolerance);
    const xHost = x.dataSync() as Float32Array;
    native.prunedDenoise(this.points, this.halfNormHost, pca.meanHost, pca.basisHost, pca.tableHost, pca.maxProjected, pca.maxResidual, xHost, t, cutoff, Math.floor(this.n * NATIVE_ROW_FRACTION), out, kept);
    const denseRows: number[] = [];
    kept.forEach((k, r) => {
      if (k < 0) denseRows.push(r);
      this.pruningStats.pointsKept += k < 0 ? this.n : k;
    });
    this.pruningStats.rows += B;
    this.pruningStats.pointsTotal += B * this.n;
    if (denseRows.length === B) return this.denoiseDense(x, t);
    if (denseRows.length) {
      // the rows left to the dense kernel: its native one-pass form, on host copies of those rows (the same bits as
      // denoiseDense, whose logits no metric could reuse here: they would belong to another tensor)
      const rows = new Float32Array(denseRows.length * dim);
      denseRows.forEach((r, k) => rows.set(xHost.subarray(r * dim, (r + 1) * dim), k * dim));
      const values = this.denseNative(native, rows, t, null);
      denseRows.forEach((r, k) => out.set(values.subarray(k * dim, (k + 1) * dim), r * dim));
    }
    return tf.tensor2d(out, [B, dim]);
  }

  /** The dense optimal denoiser (every training point). */
  denoiseDense(x: tf.Tensor2D, t: number): tf.Tensor2D {
    const native = activeNativeBlas();
    if (native) return this.denoiseDenseNative(native, x, t);
    const invT2 = 1 / (t * t);
    this.dropCache();
    if (this.chunks.length === 1) {
      // one chunk: D* = softmax(logits) . Y, with the backend's fused softmax
      const c = this.chunks[0]!;
      const logits = this.logits(x, c, invT2);
      const out = tf.tidy(() => tf.matMul(tf.softmax(logits), this.pointsOf(c)) as tf.Tensor2D);
      if (this.cacheLogits) this.cached = { xId: x.id, t, logits: [logits] };
      else logits.dispose();
      return out;
    }
    const keep: tf.Tensor2D[] = [];
    let runMax: tf.Tensor2D | null = null;
    let runSum: tf.Tensor2D | null = null;
    let runAcc: tf.Tensor2D | null = null;
    for (const c of this.chunks) {
      const logits = this.logits(x, c, invT2);
      const next = tf.tidy(() => {
        const chunkMax = tf.max(logits, 1, true) as tf.Tensor2D;
        if (!runMax || !runSum || !runAcc) {
          const e = tf.exp(tf.sub(logits, chunkMax));
          return [chunkMax, tf.sum(e, 1, true), tf.matMul(e, this.pointsOf(c))] as tf.Tensor2D[];
        }
        const newMax = tf.maximum(runMax, chunkMax);
        const rescale = tf.exp(tf.sub(runMax, newMax));
        const e = tf.exp(tf.sub(logits, newMax));
        return [newMax, tf.add(tf.mul(runSum, rescale), tf.sum(e, 1, true)), tf.add(tf.mul(runAcc, rescale), tf.matMul(e, this.pointsOf(c)))] as tf.Tensor2D[];
      });
      if (this.cacheLogits) keep.push(logits);
      else logits.dispose();
      tf.dispose([runMax, runSum, runAcc].filter((v): v is tf.Tensor2D => v !== null));
      [runMax, runSum, runAcc] = next as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
    }
    const out = tf.tidy(() => tf.div(runAcc!, runSum!) as tf.Tensor2D);
    tf.dispose([runMax!, runSum!, runAcc!]);
    if (this.cacheLogits) this.cached = { xId: x.id, t, logits: keep };
    return out;
  }

  /**
   * denoiseDense with the native kernel (native/dense_denoiser.c): one pass over the training set in blocks that stay
   * in cache for both products, instead of two products that each stream it from memory, with the softmax streamed
   * over the blocks. The logits it keeps for the metrics are the tensor path's, bit for bit; D* itself differs from
   * the tensor path's by float32 rounding (another summation order and exponential).
   */
  private denoiseDenseNative(native: NativeBlas, x: tf.Tensor2D, t: number): tf.Tensor2D {
    const [B, dim] = x.shape;
    const logits = this.cacheLogits ? this.pooledBuffer(B * this.n) : null;
    const out = this.denseNative(native, x.dataSync() as Float32Array, t, logits);
    if (logits) {
      // per chunk [B, size], as the tensor path keeps them (on the host: the metrics read them there)
      const perChunk =
        this.chunks.length === 1
          ? [logits]
          : this.chunks.map((c) => {
              const part = this.pooledBuffer(B * c.size);
              for (let r = 0; r < B; r++) part.set(logits.subarray(r * this.n + c.start, r * this.n + c.start + c.size), r * c.size);
              return part;
            });
      if (this.chunks.length > 1) this.releaseLogits([logits]);
      this.cached = { xId: x.id, t, logits: perChunk };
    }
    return tf.tensor2d(out, [B, dim]);
  }

  /**
   * D*(rows; t) by the native kernel on host rows ([B, dim]), their logits written into `logits` unless null; the
   * cached logits of an earlier evaluation are dropped.
   */
  private denseNative(native: NativeBlas, rows: Float32Array, t: number, logits: Float32Array | null): Float32Array {
    this.dropCache();
    const out = new Float32Array(rows.length);
    native.denseDenoise(this.points, this.halfNormHost, rows, 1 / (t * t), out, logits);
    return out;
  }

  private dropCache(): void {
    if (this.cached) this.releaseLogits(this.cached.logits);
    this.cached = null;
  }

  /** A host buffer of `length` floats from the pool (contents undefined), or a new one. */
  private pooledBuffer(length: number): Float32Array {
    const i = this.logitsPool.findIndex((b) => b.length === length);
    return i >= 0 ? this.logitsPool.splice(i, 1)[0]! : new Float32Array(length);
  }

  /**
   * Gives back logits taken with takeLogits (or dropped from the cache): tensors are disposed, host buffers kept for
   * the next evaluations. Each must be released once, after its last use.
   */
  releaseLogits(logits: ChunkLogits[] | null | undefined): void {
    for (const l of logits ?? []) {
      if (!(l instanceof Float32Array)) l.dispose();
      else if (this.logitsPool.length < LOGITS_POOL * (this.chunks.length + 1) && !this.logitsPool.includes(l)) this.logitsPool.push(l);
    }
  }

  /**
   * The per-chunk logits (x . y_j - ||y_j||^2 / 2) / t^2 of the latest dense evaluation, if it was of this very tensor
   * at this sigma (ownership passes to the caller), else null. The metrics reuse them instead of another pass over
   * the training set: the KDE gain at bandwidth t_i needs exactly these logits at x_i, the nearest-neighbour search
   * their ranking. Same kernel, same numbers as recomputing them. Per chunk, a tensor, or a host array with native
   * products; the caller gives them back with releaseLogits.
   */
  takeLogits(x: tf.Tensor2D, t: number): ChunkLogits[] | null {
    if (!this.cached || this.cached.xId !== x.id || this.cached.t !== t) return null;
    const { logits } = this.cached;
    this.cached = null;
    return logits;
  }

  /**
   * KDE gain log p_t(x') - log p_t(x) per row, for the kernel density estimate p_t = (1/n) sum_j N(y_j, t^2 I).
   * Computed through the exact identity log p_t(x') - log p_t(x) = log sum_j w_j exp(c_j), with w = softmax(a) the
   * mean-shift weights at x and c_j = a'_j - a_j = (2 delta . y_j - delta . (x + x')) / (2 t^2), delta = x' - x.
   * This never subtracts two large log-densities, so the sign of a tiny gain is reliable; by Jensen's inequality the
   * result is >= delta . (2 D*(x) - x - x') / (2 t^2), which is >= 0 for any step x' = x + lambda (D*(x) - x),
   * lambda in [0, 2] (the Euler step of annealed mean shift). Reductions run on the host in float64.
   * `xHost`, `xNextHost` are the same points as `x`, `xNext` (row-major [B, dim]); `cachedLogits` (takeLogits at x, t)
   * stay the caller's.
   */
  kdeGain(x: tf.Tensor2D, xNext: tf.Tensor2D, xHost: Float32Array, xNextHost: Float32Array, t: number, cachedLogits?: ChunkLogits[] | null): Float64Array {
    const [B, dim] = x.shape;
    const invT2 = 1 / (t * t);
    const rowTerm = new Float64Array(B);
    for (let r = 0; r < B; r++) {
      let s = 0;
      for (let k = 0; k < dim; k++) {
        const a = xHost[r * dim + k]!;
        const b = xNextHost[r * dim + k]!;
        s += (b - a) * (b + a);
      }
      rowTerm[r] = s;
    }
    const delta = tf.sub(xNext, x) as tf.Tensor2D;
    // with native products both products run on the host copy of the points (the same bits, see hostDots)
    const native = activeNativeBlas();
    const deltaHost = native ? (delta.dataSync() as Float32Array) : null;
    // Per row: two log-sum-exps kept relative to a reference (the first chunk's max) so that their difference is small.
    const ref = new Float64Array(B);
    const lse0 = new Float64Array(B).fill(-Infinity);
    const lse1 = new Float64Array(B).fill(-Infinity);
    const sums = new Float64Array(4 * B);
    this.chunks.forEach((c, ci) => {
      let aHost: Float32Array;
      let dyHost: Float32Array;
      const cached = cachedLogits?.[ci];
      this.metricProducts += cached ? 1 : 2;
      if (native) {
        aHost = cached ? hostArray(cached) : this.hostLogits(native, xHost, B, c, invT2);
        if (this.dotsScratch.length < B * c.size) this.dotsScratch = new Float32Array(B * c.size);
        dyHost = this.hostDots(native, deltaHost!, B, c, this.dotsScratch.subarray(0, B * c.size));
      } else {
        const a = cached ?? this.logits(x, c, invT2);
        const dy = this.dots(delta, c);
        aHost = hostArray(a);
        dyHost = dy.dataSync() as Float32Array;
        tf.dispose(cached ? [dy] : [a as tf.Tensor2D, dy]);
      }
      // per row: m0, s0 = sum e^(a_j - m0), m1, s1 = sum e^(a_j - m0 + c_j - m1) (kde-sums.ts; the binding's the same bits)
      if (native) native.kdeSums(aHost, dyHost, rowTerm, invT2, sums);
      else kdeChunkSums(aHost, dyHost, rowTerm, invT2, sums);
      for (let r = 0; r < B; r++) {
        const m0 = sums[4 * r]!;
        if (ci === 0) ref[r] = m0;
        const shift = m0 - ref[r]!;
        lse0[r] = logAddExp(lse0[r]!, shift + Math.log(sums[4 * r + 1]!));
        lse1[r] = logAddExp(lse1[r]!, shift + sums[4 * r + 2]! + Math.log(sums[4 * r + 3]!));
      }
    });
    delta.dispose();
    const gain = new Float64Array(B);
    for (let r = 0; r < B; r++) gain[r] = lse1[r]! - lse0[r]!;
    return gain;
  }

  /**
   * Nearest and second-nearest training points of each row of `queries` ([B, dim] on the host). Candidates come from
   * the device (top-k of x . y_j - ||y_j||^2 / 2 per chunk); their distances are then recomputed exactly in float64, so
   * the reported distances are not subject to the cancellation of the expanded form near convergence.
   */
  nearest(queries: Float32Array, B: number, candidates = 8, cachedLogits?: ChunkLogits[] | null): NearestResult {
    const { dim } = this;
    const native = activeNativeBlas();
    // the queries go to the device only for chunks whose scores are not cached and only without native products,
    // which compute the scores on the host copy of the points (the same bits, see hostDots)
    const q = native || this.chunks.every((_, ci) => cachedLogits?.[ci]) ? null : tf.tensor2d(queries, [B, dim], 'float32');
    const cand: number[][] = Array.from({ length: B }, () => []);
    for (const [ci, c] of this.chunks.entries()) {
      const k = Math.min(candidates, c.size);
      const { indices } = tf.tidy(() => {
        // the cached logits are these scores divided by t^2: the same ranking
        const cached = cachedLogits?.[ci];
        if (!cached) this.metricProducts++;
        const score = cached ? (cached instanceof Float32Array ? tf.tensor2d(cached, [B, c.size]) : cached) : native ? this.hostScores(native, queries, B, c) : tf.sub(this.dots(q!, c), c.halfNorm);
        const top = tf.topk(score, k, true);
        return { indices: top.indices };
      });
      const idx = indices.dataSync();
      indices.dispose();
      for (let r = 0; r < B; r++) for (let j = 0; j < k; j++) cand[r]!.push(c.start + idx[r * k + j]!);
    }
    q?.dispose();
    const index = new Int32Array(B);
    const dist = new Float64Array(B);
    const dist2 = new Float64Array(B).fill(Number.NaN);
    for (let r = 0; r < B; r++) {
      let best = Infinity;
      let second = Infinity;
      let bestIdx = -1;
      for (const j of new Set(cand[r]!)) {
        let s = 0;
        for (let k = 0; k < dim; k++) {
          const d = queries[r * dim + k]! - this.points[j * dim + k]!;
          s += d * d;
        }
        if (s < best || (s === best && j < bestIdx)) {
          second = best;
          best = s;
          bestIdx = j;
        } else if (s < second) {
          second = s;
        }
      }
      index[r] = bestIdx;
      dist[r] = Math.sqrt(best);
      if (Number.isFinite(second)) dist2[r] = Math.sqrt(second);
    }
    return { index, dist, dist2 };
  }

  /** The nearest-neighbour scores x . y_j - ||y_j||^2 / 2 of a chunk with native products, as a tensor for topk. */
  private hostScores(native: NativeBlas, queries: Float32Array, B: number, c: Chunk): tf.Tensor2D {
    const score = this.hostDots(native, queries, B, c);
    for (let r = 0; r < B; r++) for (let j = 0; j < c.size; j++) score[r * c.size + j] = score[r * c.size + j]! - this.halfNormHost[c.start + j]!;
    return tf.tensor2d(score, [B, c.size]);
  }

  dispose(): void {
    this.dropCache();
    this.logitsPool.length = 0;
    this.dotsScratch = new Float32Array(0);
    for (const c of this.chunks) tf.dispose([c.halfNorm, ...(c.y ? [c.y] : []), ...(c.yt ? [c.yt] : [])]);
    this.keptScratch = new Float32Array(0);
    if (this.pca) tf.dispose([this.pca.mean, this.pca.basis, ...(this.pca.bounds ?? [])]);
    this.chunks.length = 0;
  }
}

/** Points projected on the host by native products per block: a block's centred copy is this many points. */
const PROJECTION_BLOCK = 512;

/**
 * (y_j - mean) . basis for every point, row-major [n, rank]: float32 differences, then the native product, a block of
 * points at a time (a row's product does not depend on the other rows of its block), so no centred copy of the whole
 * set (and no device copy) is ever made.
 */
function projectOnHost(native: NativeBlas, points: Float32Array, n: number, dim: number, mean: Float32Array, basis: Float32Array, rank: number): Float32Array {
  const projected = new Float32Array(n * rank);
  const centred = new Float32Array(Math.min(n, PROJECTION_BLOCK) * dim);
  for (let start = 0; start < n; start += PROJECTION_BLOCK) {
    const rows = Math.min(PROJECTION_BLOCK, n - start);
    for (let i = 0; i < rows * dim; i++) centred[i] = points[start * dim + i]! - mean[i % dim]!;
    native.sgemm(false, false, rows, rank, dim, centred.subarray(0, rows * dim), basis, projected.subarray(start * rank, (start + rows) * rank));
  }
  return projected;
}

function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}
