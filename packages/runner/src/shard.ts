import * as tf from '@tensorflow/tfjs-core';
import { analyticFirstStep, initialNoiseBatch, pointMetrics, sampleMetrics, SOLVERS, type StepEvent } from '@trajlab/core';
import { buildTable, makeSchema, SAMPLES_COLUMNS, STATES_COLUMNS, STEPS_COLUMNS, toIpcFile, type ColumnData } from '@trajlab/results';
import type { PlannedConfig, ShardPlan } from '@trajlab/study';
import type { ChunkLogits } from '@trajlab/denoisers';
import type { StudyContext } from './context.js';

/** A NaN or Inf met during sampling; names where it happened. */
export class NumericalError extends Error {
  constructor(
    readonly configId: string,
    readonly sample: number,
    readonly step: number,
    readonly sigma: number,
    what: string,
  ) {
    super(`non-finite ${what} in config ${configId}, sample ${sample}, step ${step}, sigma ${sigma}`);
    this.name = 'NumericalError';
  }
}

/** The serialised tables of one shard. */
export interface ShardOutput {
  steps: Uint8Array;
  samples: Uint8Array;
  /** Null when no sample of the shard is kept. */
  states: Uint8Array | null;
  rows: { steps: number; samples: number; states: number };
}

/** Fraction of ||x_S|| under which a trajectory counts as having reached its final sample (x_reach_sigma, d_reach_sigma). */
export const REACH_FRACTION = 0.1;

/** What a shard may be given besides its config and samples. */
export interface ShardInputs {
  /** Final samples x_S of the reference config for the same sample ids, row-major [count, dim] (ODE-Jump, global error). */
  referenceFinals?: Float32Array;
  /** Called after each visited point (progress). */
  onPoint?: (done: number, total: number) => void;
}

/** The columns every shard file starts with (the config's id, solver, schedule and steps), for `rows` rows. */
export function configColumns(config: PlannedConfig, rows: number): Record<string, ColumnData> {
  return {
    config_id: { values: new Array<string>(rows).fill(config.configId) },
    solver: { values: new Array<string>(rows).fill(config.solver) },
    schedule: { values: new Array<string>(rows).fill(config.schedule) },
    steps: { values: new Int32Array(rows).fill(config.steps) },
  };
}

/**
 * Runs one shard: integrates the PF-ODE for samples [first, first + count) of one config as a single batch, records
 * x_i and D(x_i; t_i) at every point through the solver's observer, then measures the trajectories on the host.
 * `onPoint` is called after each visited point (progress).
 */
export async function runShard(ctx: StudyContext, config: PlannedConfig, shard: ShardPlan, inputs: ShardInputs = {}): Promise<ShardOutput> {
  return (await runShardBatch(ctx, config, [shard], inputs))[0]!;
}

/**
 * Runs several shards of one config as one batch (their samples' rows one after the other, in the order given) and
 * returns each shard's tables, the same bytes as runShard gives each alone wherever the denoiser computes every row
 * independently of the rows beside it (see shardsPerBatch). `referenceFinals` holds the batch's rows in that order.
 */
export async function runShardBatch(ctx: StudyContext, config: PlannedConfig, shards: readonly ShardPlan[], inputs: ShardInputs = {}): Promise<ShardOutput[]> {
  const { referenceFinals, onPoint } = inputs;
  if (config.sigmas.length !== config.steps + 1) throw new Error(`config ${config.configId} has no sigmas yet (gits schedules are computed at run start)`);
  if (shards.length === 0) return [];
  const { spec } = ctx.study;
  const { dim } = ctx.dataset;
  const B = shards.reduce((rows, s) => rows + s.count, 0);
  const P = config.points;
  const S = config.steps;
  // the sample id of each row of the batch
  const sampleOfRow = new Int32Array(B);
  for (let s = 0, r = 0; s < shards.length; s++) for (let k = 0; k < shards[s]!.count; k++) sampleOfRow[r++] = shards[s]!.first + k;
  const xs = new Float32Array(B * P * dim);
  const ds = new Float32Array(B * P * dim);
  const hasD = new Uint8Array(P);
  const sigmaAt = new Float64Array(P);
  const nfeAt = new Int32Array(P);
  const scoreDev = new Float64Array(B * P).fill(Number.NaN);
  const kdeGain = new Float64Array(B * P).fill(Number.NaN);
  const ts = ctx.trainingSet;
  let prev: { x: tf.Tensor2D; host: Float32Array; sigma: number; i: number; logits: ChunkLogits[] | null } | null = null;
  /** Frees the previous point's copy of x and gives its logits back. */
  const dropPrevious = (p: { x: tf.Tensor2D; logits: ChunkLogits[] | null }) => {
    p.x.dispose();
    ts?.releaseLogits(p.logits);
  };
  let finalLogits: ChunkLogits[] | null = null;
  let finalDenoised: tf.Tensor2D | null = null;

  const checkFinite = (host: Float32Array, i: number, sigma: number, what: string) => {
    const j = firstNonFinite(host);
    if (j >= 0) throw new NumericalError(config.configId, sampleOfRow[Math.floor(j / dim)]!, i, sigma, what);
  };

  const observe = async (e: StepEvent) => {
    const xHost = new Float32Array(e.x.dataSync()); // a copy (the typed-array constructor copies ~30x faster than .from)
    checkFinite(xHost, e.i, e.sigma, 'x');
    storePoint(xs, xHost, B, P, dim, e.i);
    sigmaAt[e.i] = e.sigma;
    // With AFS the solver's first "evaluation" is analytic: it is neither counted nor reported as D(x_0).
    nfeAt[e.i] = config.afs && e.i > 0 ? e.nfe - 1 : e.nfe;
    let denoised = config.afs && e.i === 0 ? null : e.denoised;
    // Where the solver did not evaluate D at x_i itself (the last point, UniPC's corrected points, the AFS point), it
    // is evaluated for the metrics (not counted in NFE); at the last point denoiseToZero needs it as its final jump.
    let filled: tf.Tensor2D | null = null;
    if (!denoised && e.sigma > 0 && (spec.metrics.fillDenoised || (config.denoiseToZero && e.i === S))) {
      filled = ctx.denoiser.denoise(e.x, e.sigma);
      denoised = filled;
      if (e.i === S) {
        finalDenoised = filled;
        filled = null;
      }
    }
    let dHost: Float32Array | null = null;
    if (denoised && e.sigma > 0) {
      dHost = new Float32Array(denoised.dataSync());
      checkFinite(dHost, e.i, e.sigma, 'D(x)');
      storePoint(ds, dHost, B, P, dim, e.i);
      hasD[e.i] = 1;
    }
    // The optimal denoiser's own logits at (x_i, t_i), when its latest evaluation was exactly that: reused below.
    const logits = ts && e.sigma > 0 ? ts.takeLogits(e.x, e.sigma) : null;
    if (ctx.compare && dHost && e.sigma > 0) {
      const other = ctx.compare.denoise(e.x, e.sigma);
      const oHost = other.dataSync();
      other.dispose();
      for (let r = 0; r < B; r++) {
        let s = 0;
        for (let k = 0; k < dim; k++) s += (dHost[r * dim + k]! - oHost[r * dim + k]!) ** 2;
        scoreDev[r * P + e.i] = Math.sqrt(s);
      }
    }
    if (prev && ts && spec.metrics.kde) {
      const gain = ts.kdeGain(prev.x, e.x, prev.host, xHost, prev.sigma, prev.logits);
      for (let r = 0; r < B; r++) kdeGain[r * P + prev.i] = gain[r]!;
    }
    filled?.dispose();
    if (prev) dropPrevious(prev);
    if (e.i === P - 1 && logits) {
      finalLogits = logits;
      prev = null;
    } else {
      prev = spec.metrics.kde && ts ? { x: tf.clone(e.x), host: xHost, sigma: e.sigma, i: e.i, logits } : null;
      if (!prev) ts?.releaseLogits(logits);
    }
    onPoint?.(e.i + 1, P);
    // Yield to the event loop once per point: progress output, cancellation polls and lock renewals run meanwhile.
    await new Promise<void>((resolve) => setImmediate(resolve));
  };

  // each shard's samples in turn (a sample's noise depends on its id alone)
  const x0 = tf.tensor2d(concatRows(shards.map((s) => initialNoiseBatch(spec.seed, s.first, s.count, dim, config.sigmas[0]!))), [B, dim]);
  const denoise = config.afs ? analyticFirstStep(ctx.denoiser.denoise) : ctx.denoiser.denoise;
  let xS: tf.Tensor2D | null = null;
  try {
    xS = await SOLVERS[config.solver].run(denoise, x0, config.sigmas, config.options, observe);
    if (config.denoiseToZero) {
      // The final jump to sigma = 0: x_{S+1} = D(x_S; sigmaMin), one more evaluation (counted in NFE).
      await observe({ i: S + 1, sigma: 0, x: finalDenoised!, denoised: null, nfe: nfeAt[S]! + 1 });
    }
  } finally {
    tf.dispose([x0, ...(xS ? [xS] : []), ...(finalDenoised ? [finalDenoised] : [])]);
    const last = prev as { x: tf.Tensor2D; logits: ChunkLogits[] | null } | null;
    if (last) dropPrevious(last);
  }

  // ---- host-side trajectory geometry ----
  const rows = B * P;
  const f32 = () => new Float32Array(rows).fill(Number.NaN);
  const cols = {
    xNorm: f32(),
    dNorm: f32(),
    distXFinal: f32(),
    distDFinal: f32(),
    devX: f32(),
    devD: f32(),
    cosEpsFinal: f32(),
    turnAngle: f32(),
  };
  const sampleCols = {
    chord: new Float64Array(B),
    pathLength: new Float64Array(B),
    maxDevX: new Float64Array(B),
    maxDevRatio: new Float64Array(B),
    pca1: new Float64Array(B),
    pca2: new Float64Array(B),
    pca3: new Float64Array(B),
    xReach: new Float64Array(B),
    dReach: new Float64Array(B),
    minKde: new Float64Array(B),
  };
  const finals = new Float32Array(B * dim);
  for (let r = 0; r < B; r++) {
    const traj = { dim, points: P, x: xs.subarray(r * P * dim, (r + 1) * P * dim), denoised: ds.subarray(r * P * dim, (r + 1) * P * dim), hasDenoised: hasD };
    const pm = pointMetrics(traj);
    const sm = sampleMetrics(traj, pm, spec.metrics.pca);
    for (const [key, arr] of Object.entries(cols) as [keyof typeof cols, Float32Array][]) arr.set(pm[key], r * P);
    finals.set(traj.x.subarray((P - 1) * dim), r * dim);
    sampleCols.chord[r] = sm.chord;
    sampleCols.pathLength[r] = sm.pathLength;
    sampleCols.maxDevX[r] = sm.maxDevX;
    sampleCols.maxDevRatio[r] = sm.maxDevRatio;
    [sampleCols.pca1[r], sampleCols.pca2[r], sampleCols.pca3[r]] = sm.pcaVar;
    const threshold = REACH_FRACTION * pm.xNorm[P - 1]!;
    sampleCols.xReach[r] = reachSigma(pm.distXFinal, sigmaAt, threshold);
    sampleCols.dReach[r] = reachSigma(pm.distDFinal, sigmaAt, threshold);
    let minGain = Number.NaN;
    for (let i = 0; i < P; i++) {
      const g = kdeGain[r * P + i]!;
      if (!Number.isNaN(g) && !(g >= minGain)) minGain = g;
    }
    sampleCols.minKde[r] = minGain;
  }
  const nn = ts && spec.metrics.nearest ? ts.nearest(finals, B, 8, finalLogits) : null;
  ts?.releaseLogits(finalLogits);
  // ODE-Jump (output D(x_i) now) and the full solve, both against the reference config's final sample.
  const jumpErrRef = new Float32Array(rows).fill(Number.NaN);
  const finalErrRef = new Float64Array(B).fill(Number.NaN);
  if (referenceFinals) {
    if (referenceFinals.length !== B * dim) throw new Error(`reference finals for shard ${shards.map((sh) => sh.name).join(', ')} have ${referenceFinals.length} values, expected ${B * dim}`);
    for (let r = 0; r < B; r++) {
      for (let i = 0; i < P; i++) if (hasD[i]) jumpErrRef[r * P + i] = distance(ds, (r * P + i) * dim, referenceFinals, r * dim, dim);
      finalErrRef[r] = distance(finals, r * dim, referenceFinals, r * dim, dim);
    }
  }

  // ---- tables, one set per shard ----
  const measured: Measured = { xs, ds, hasD, sigmaAt, nfeAt, cols, sampleCols, scoreDev, kdeGain, jumpErrRef, finalErrRef, finals, nn, nnPoints: nn ? gatherRows(ts!.points, nn.index, dim) : null };
  const outputs: ShardOutput[] = [];
  for (let s = 0, r0 = 0; s < shards.length; r0 += shards[s]!.count, s++) outputs.push(shardTables(ctx, config, shards[s]!, r0, measured));
  return outputs;
}

/** What runShardBatch measured over the whole batch, row by row (steps: [rows, P]; samples: [rows]; vectors: [rows, dim]). */
interface Measured {
  xs: Float32Array;
  ds: Float32Array;
  hasD: Uint8Array;
  sigmaAt: Float64Array;
  nfeAt: Int32Array;
  cols: Record<'xNorm' | 'dNorm' | 'distXFinal' | 'distDFinal' | 'devX' | 'devD' | 'cosEpsFinal' | 'turnAngle', Float32Array>;
  sampleCols: Record<'chord' | 'pathLength' | 'maxDevX' | 'maxDevRatio' | 'pca1' | 'pca2' | 'pca3' | 'xReach' | 'dReach' | 'minKde', Float64Array>;
  scoreDev: Float64Array;
  kdeGain: Float64Array;
  jumpErrRef: Float32Array;
  finalErrRef: Float64Array;
  finals: Float32Array;
  nn: { index: Int32Array; dist: Float64Array; dist2: Float64Array } | null;
  /** The nearest training point of each row's x_S, [rows, dim]; null without nearest neighbours. */
  nnPoints: Float32Array | null;
}

/** The `width` values of each of `count` rows from row `r0` of `a` (a view, no copy). */
function rowsOf<T extends Float32Array | Float64Array | Int32Array>(a: T, r0: number, count: number, width = 1): T {
  return a.subarray(r0 * width, (r0 + count) * width) as T;
}

/** The serialised tables of `shard`, whose samples are the batch's rows [r0, r0 + shard.count). */
function shardTables(ctx: StudyContext, config: PlannedConfig, shard: ShardPlan, r0: number, m: Measured): ShardOutput {
  const { dim } = ctx.dataset;
  const P = config.points;
  const B = shard.count;
  const rows = B * P;
  const perPoint = <T extends Float32Array | Float64Array>(a: T) => rowsOf(a, r0, B, P);
  const perSample = <T extends Float32Array | Float64Array | Int32Array>(a: T) => rowsOf(a, r0, B);
  const { cols, sampleCols, nn } = m;
  const extra = { 'trajlab.config_id': config.configId, 'trajlab.shard': shard.name, 'trajlab.sigmas': JSON.stringify(config.sigmas) };
  const meta = { ...ctx.meta, extra };
  const stepsTable = buildTable(STEPS_COLUMNS, makeSchema(STEPS_COLUMNS, dim, meta), rows, dim, {
    ...configColumns(config, rows),
    sample: { values: sampleIds(shard.first, B, P) },
    step: { values: stepIndices(B, P) },
    sigma: { values: repeatRows(m.sigmaAt, B) },
    nfe: { values: repeatRows(m.nfeAt, B) },
    x_norm: { values: perPoint(cols.xNorm) },
    d_norm: { values: perPoint(cols.dNorm) },
    dist_x_final: { values: perPoint(cols.distXFinal) },
    dist_d_final: { values: perPoint(cols.distDFinal) },
    dev_x: { values: perPoint(cols.devX) },
    dev_d: { values: perPoint(cols.devD) },
    cos_eps_final: { values: perPoint(cols.cosEpsFinal) },
    turn_angle: { values: perPoint(cols.turnAngle) },
    score_dev: { values: new Float32Array(perPoint(m.scoreDev)) },
    kde_gain: { values: perPoint(m.kdeGain) },
    jump_err_ref: { values: perPoint(m.jumpErrRef) },
  });
  const nnValid = new Uint8Array(B).fill(nn ? 1 : 0);
  const noValues = () => new Float64Array(B).fill(Number.NaN);
  const nnDist = nn ? perSample(nn.dist) : null;
  const nnDist2 = nn ? perSample(nn.dist2) : null;
  const samplesTable = buildTable(SAMPLES_COLUMNS, makeSchema(SAMPLES_COLUMNS, dim, meta), B, dim, {
    ...configColumns(config, B),
    sample: { values: sampleIds(shard.first, B, 1) },
    nfe_total: { values: new Int32Array(B).fill(m.nfeAt[P - 1]!) },
    chord: { values: perSample(sampleCols.chord) },
    path_length: { values: perSample(sampleCols.pathLength) },
    max_dev_x: { values: perSample(sampleCols.maxDevX) },
    max_dev_ratio: { values: perSample(sampleCols.maxDevRatio) },
    pca_var_1: { values: perSample(sampleCols.pca1) },
    pca_var_2: { values: perSample(sampleCols.pca2) },
    pca_var_3: { values: perSample(sampleCols.pca3) },
    x_reach_sigma: { values: perSample(sampleCols.xReach) },
    d_reach_sigma: { values: perSample(sampleCols.dReach) },
    min_kde_gain: { values: perSample(sampleCols.minKde) },
    nn_index: { values: nn ? perSample(nn.index) : new Int32Array(B), valid: nnValid },
    nn_dist: { values: nnDist ?? noValues() },
    nn2_dist: { values: nnDist2 ?? noValues() },
    nn_ratio: { values: nnDist && nnDist2 ? Float64Array.from(nnDist, (d, r) => d / nnDist2[r]!) : noValues() },
    final_err_ref: { values: perSample(m.finalErrRef) },
    final: { values: rowsOf(m.finals, r0, B, dim) },
    nn_point: {
      values: m.nnPoints ? rowsOf(m.nnPoints, r0, B, dim) : new Float32Array(B * dim),
      valid: nnValid,
    },
  });

  const kept = Math.max(0, Math.min(B, ctx.study.spec.keepStates - shard.first));
  let states: Uint8Array | null = null;
  if (kept > 0) {
    const n = kept * P;
    states = toIpcFile(
      buildTable(STATES_COLUMNS, makeSchema(STATES_COLUMNS, dim, meta), n, dim, {
        config_id: { values: new Array<string>(n).fill(config.configId) },
        sample: { values: sampleIds(shard.first, kept, P) },
        step: { values: stepIndices(kept, P) },
        sigma: { values: repeatRows(m.sigmaAt, kept) },
        x: { values: rowsOf(m.xs, r0, kept, P * dim) },
        denoised: { values: rowsOf(m.ds, r0, kept, P * dim), valid: repeatRows(m.hasD, kept) },
      }),
    );
  }
  return {
    steps: toIpcFile(stepsTable),
    samples: toIpcFile(samplesTable),
    states,
    rows: { steps: rows, samples: B, states: kept * P },
  };
}

/** Row-major blocks of rows, one after the other (a single block is returned as it is, not copied). */
export function concatRows(blocks: readonly Float32Array[]): Float32Array {
  if (blocks.length === 1) return blocks[0]!;
  const out = new Float32Array(blocks.reduce((n, b) => n + b.length, 0));
  for (let i = 0, at = 0; i < blocks.length; at += blocks[i]!.length, i++) out.set(blocks[i]!, at);
  return out;
}

// The helpers below are module functions, not closures made per shard: V8 drops a closure's optimized code once the
// closure is garbage, so a closure made anew for every shard is compiled again for every shard (TurboFan, on the
// process's helper threads, which two shard processes on two cores cannot spare).

/** Copies a batch's rows `host` ([B, dim]) to point `i` of each trajectory in `target` ([B, P, dim]). */
function storePoint(target: Float32Array, host: Float32Array, B: number, P: number, dim: number, i: number): void {
  for (let r = 0; r < B; r++) target.set(host.subarray(r * dim, (r + 1) * dim), (r * P + i) * dim);
}

/** Index of the first NaN or infinity in `values`, or -1. */
function firstNonFinite(values: Float32Array): number {
  for (let j = 0; j < values.length; j++) if (!Number.isFinite(values[j]!)) return j;
  return -1;
}

/** Euclidean distance between a[aOff, aOff + dim) and b[bOff, bOff + dim). */
function distance(a: Float32Array, aOff: number, b: Float32Array, bOff: number, dim: number): number {
  let s2 = 0;
  for (let k = 0; k < dim; k++) s2 += (a[aOff + k]! - b[bOff + k]!) ** 2;
  return Math.sqrt(s2);
}

/** The sample id of each of `count` trajectories' `P` rows, trajectory by trajectory: first, first (P times), first + 1, ... */
function sampleIds(first: number, count: number, P: number): Int32Array {
  const out = new Int32Array(count * P);
  for (let r = 0; r < count; r++) out.fill(first + r, r * P, (r + 1) * P);
  return out;
}

/** The point index of each of `count` trajectories' `P` rows: 0, 1, ..., P - 1, 0, 1, ... */
function stepIndices(count: number, P: number): Int32Array {
  const out = new Int32Array(count * P);
  for (let j = 0; j < out.length; j++) out[j] = j % P;
  return out;
}

/** `perPoint` (one value per point) repeated for each of `count` trajectories. */
function repeatRows<T extends Float64Array | Int32Array | Uint8Array>(perPoint: T, count: number): T {
  const P = perPoint.length;
  const out = new (perPoint.constructor as new (n: number) => T)(count * P);
  for (let r = 0; r < count; r++) out.set(perPoint, r * P);
  return out;
}

/** Rows `index[0], index[1], ...` of the row-major [*, dim] `points`, one after the other. */
function gatherRows(points: Float32Array, index: Int32Array, dim: number): Float32Array {
  const out = new Float32Array(index.length * dim);
  for (let r = 0; r < index.length; r++) out.set(points.subarray(index[r]! * dim, (index[r]! + 1) * dim), r * dim);
  return out;
}

/** Largest sigma_i such that dist_j <= threshold for every j >= i with a value; NaN if even the last point fails. */
function reachSigma(dist: Float64Array, sigmas: Float64Array, threshold: number): number {
  let reach = Number.NaN;
  for (let i = dist.length - 1; i >= 0; i--) {
    const d = dist[i]!;
    if (Number.isNaN(d)) continue;
    if (d > threshold) break;
    reach = sigmas[i]!;
  }
  return reach;
}
