import { SOLVERS, type SolverName } from '@trajlab/core';
import type { ConfigPlan, DatasetInfo, ResolvedStudy } from './resolve.js';
import type { ResolvedModel } from './models.js';
import { DEFAULT_CHUNK_SIZE } from '@trajlab/denoisers';
import { SpecError } from './errors.js';
import type { DenoiserSpecInput, StudySpec } from './spec.js';

/** One job: a contiguous range of sample ids of one config. */
export interface ShardPlan {
  /** Position of the shard within its config. */
  index: number;
  /** First sample id. */
  first: number;
  count: number;
  /** File stem, e.g. 000064-000127: first and last sample id. */
  name: string;
}

export interface PlannedConfig extends ConfigPlan {
  /** Time points stored per trajectory (S + 1, +1 with denoiseToZero). */
  points: number;
  shards: ShardPlan[];
}

/** The plan of a study with its cost estimate. */
export interface StudyPlan {
  studyId: string;
  requestedShardSize: number;
  /** Samples per job after the memory budget. */
  shardSize: number;
  /**
   * Consecutive shards of one config that a process may compute as one batch: as many as keep the batch within
   * BATCH_ROWS samples and memoryBudgetMB (at least 1). The files are per shard either way; the runner batches only
   * where each row's result does not depend on the rows computed with it (see runner's shardsPerBatch).
   */
  shardsPerBatch: number;
  configs: PlannedConfig[];
  totals: {
    trajectories: number;
    jobs: number;
    /** Denoiser evaluations by the solvers (sum of NFE). */
    solverEvaluations: number;
    /** Denoiser-sized evaluations made only for metrics (final D, compare, KDE, nearest neighbours). */
    metricEvaluations: number;
    /** Floating-point operations, estimated. */
    flops: number;
    /** Peak memory of the largest job, estimated, bytes. */
    jobMemoryBytes: number;
    /** Bytes of Arrow output, estimated. */
    outputBytes: number;
  };
  notes: string[];
}

/** Estimated FLOPs of one evaluation for one sample. */
export function denoiserFlops(spec: DenoiserSpecInput, d: DatasetInfo, model?: ResolvedModel): number {
  switch (spec.kind) {
    case 'tfjs':
      // exact for dense networks; a convolutional network costs more per weight
      return 2 * (model?.weights ?? 0) + 8 * d.dim;
    case 'optimal':
      return 4 * d.n * d.dim + 6 * d.n;
    case 'gaussian':
      return 4 * d.dim * d.dim + 3 * d.dim;
    case 'gmm':
      return 12 * (d.components ?? 8) * d.dim;
  }
}

function denoiserBytes(spec: DenoiserSpecInput, d: DatasetInfo, batch: number, model?: ResolvedModel): number {
  switch (spec.kind) {
    case 'tfjs':
      // weights + a generous allowance for activations (16 data-sized tensors per sample)
      return 4 * (model?.weights ?? 0) + 4 * 16 * Math.min(batch, spec.maxBatch) * d.dim;
    case 'optimal':
      // both layouts of the training set + logits/exponentials of one chunk
      return 4 * (2 * d.n * d.dim + d.n) + 4 * 4 * batch * Math.min(d.n, spec.chunkSize);
    case 'gaussian':
      return 4 * 3 * d.dim * d.dim;
    case 'gmm':
      return 4 * 4 * batch * (d.components ?? 8) * d.dim;
  }
}

/** Memory of one job of `batch` samples with P points each: host trajectories, step rows, device buffers. */
function jobBytes(spec: StudySpec, study: ResolvedStudy, batch: number, points: number): number {
  const dim = study.data.dataset.dim;
  const host = batch * points * dim * 4 * 2 + batch * points * 96;
  const tensors = 16 * batch * dim * 4;
  const kde = spec.metrics.kde ? 2 * 4 * batch * Math.min(study.data.dataset.n, DEFAULT_CHUNK_SIZE) : 0;
  const den = denoiserBytes(spec.denoiser, study.data.denoiser ?? study.data.dataset, batch, study.models.denoiser);
  const cmp = spec.compare ? denoiserBytes(spec.compare, study.data.compare ?? study.data.dataset, batch, study.models.compare) : 0;
  const training = spec.metrics.kde || spec.metrics.nearest ? 4 * (2 * study.data.dataset.n * dim + study.data.dataset.n) : 0;
  return host + tensors + kde + den + cmp + (spec.denoiser.kind === 'optimal' && !spec.denoiser.dataset ? 0 : training);
}

/**
 * Samples a process computes together at most when it batches shards (plan.shardsPerBatch): the native denoiser's
 * products get ~1.5x more GFLOP/s at 64 rows than at 32 (Benchmarks), and a batch pays the per-shard costs once.
 */
export const BATCH_ROWS = 128;

function shardName(first: number, count: number): string {
  return `${String(first).padStart(6, '0')}-${String(first + count - 1).padStart(6, '0')}`;
}

/** Splits every config into shards and estimates the cost; lowers the shard size to fit memoryBudgetMB. */
export function planStudy(study: ResolvedStudy): StudyPlan {
  const { spec } = study;
  const notes: string[] = [];
  const budget = spec.memoryBudgetMB * 1024 * 1024;
  const maxPoints = Math.max(...study.configs.map((c) => c.steps + 1 + (c.denoiseToZero ? 1 : 0)));
  let shardSize = Math.min(spec.shardSize, spec.samples);
  while (shardSize > 1 && jobBytes(spec, study, shardSize, maxPoints) > budget) shardSize = Math.max(1, Math.floor(shardSize / 2));
  const need = jobBytes(spec, study, shardSize, maxPoints);
  if (need > budget) {
    throw new SpecError(
      'memoryBudgetMB',
      `a job needs about ${(need / 2 ** 20).toFixed(0)} MiB even with one sample per shard (dataset ${study.data.dataset.n} x ${study.data.dataset.dim}, ${maxPoints} points), above the budget of ${spec.memoryBudgetMB} MiB`,
    );
  }
  if (shardSize < Math.min(spec.shardSize, spec.samples)) {
    notes.push(`shardSize lowered from ${spec.shardSize} to ${shardSize} to keep a job under memoryBudgetMB = ${spec.memoryBudgetMB}`);
  }
  let shardsPerBatch = Math.max(1, Math.floor(BATCH_ROWS / shardSize));
  while (shardsPerBatch > 1 && jobBytes(spec, study, shardsPerBatch * shardSize, maxPoints) > budget) shardsPerBatch--;
  const d = study.data.dataset;
  const fDen = denoiserFlops(spec.denoiser, study.data.denoiser ?? d, study.models.denoiser);
  const fCmp = spec.compare ? denoiserFlops(spec.compare, study.data.compare ?? d, study.models.compare) : 0;
  const fKde = 4 * d.n * d.dim;
  let solverEvaluations = 0;
  let metricEvaluations = 0;
  let flops = 0;
  let outputBytes = 0;
  const configs = study.configs.map((c): PlannedConfig => {
    const points = c.steps + 1 + (c.denoiseToZero ? 1 : 0);
    const shards: ShardPlan[] = [];
    for (let first = 0, index = 0; first < spec.samples; first += shardSize, index++) {
      const count = Math.min(shardSize, spec.samples - first);
      shards.push({ index, first, count, name: shardName(first, count) });
    }
    // Metric-only evaluations of D where the solver did not evaluate it at x_i: the last point, UniPC's corrected
    // points, the AFS point.
    const finalEvals = spec.metrics.fillDenoised ? 1 + (c.solver === 'unipc' ? c.steps - 1 : 0) + (c.afs ? 1 : 0) : 0;
    const compareEvals = spec.compare ? points : 0;
    const kdeEvals = spec.metrics.kde ? points - 1 : 0;
    const nnEvals = spec.metrics.nearest ? 0.5 : 0;
    solverEvaluations += spec.samples * c.nfe;
    metricEvaluations += spec.samples * (finalEvals + compareEvals + kdeEvals + nnEvals);
    flops += spec.samples * ((c.nfe + finalEvals) * fDen + compareEvals * fCmp + kdeEvals * fKde + nnEvals * fKde);
    if (c.gits) {
      // teacher trajectories for the GITS cost matrix (computed once per distinct gits setting; counted per config here)
      const teacherNfe = SOLVERS[c.gits.teacher as SolverName].nfePerStep * c.gits.teacherSteps;
      metricEvaluations += c.gits.warmup * teacherNfe;
      flops += c.gits.warmup * teacherNfe * fDen;
    }
    const kept = Math.min(spec.keepStates, spec.samples);
    outputBytes += spec.samples * points * 72 + spec.samples * (160 + 4 * d.dim) + kept * points * 8 * d.dim;
    return { ...c, points, shards };
  });
  return {
    studyId: study.studyId,
    requestedShardSize: spec.shardSize,
    shardSize,
    shardsPerBatch,
    configs,
    totals: {
      trajectories: spec.samples * configs.length,
      jobs: configs.reduce((a, c) => a + c.shards.length, 0),
      solverEvaluations,
      metricEvaluations,
      flops,
      jobMemoryBytes: need,
      outputBytes,
    },
    notes,
  };
}

/**
 * A config's work per trajectory, for ordering shards: its denoiser evaluations (NFE) plus its stored time points
 * (where the metrics run).
 */
export const trajectoryCost = (config: PlannedConfig): number => config.nfe + config.points;

/**
 * The order in which a study's configs' shards are best handed out to processes: the reference first (every other
 * shard reads its final samples), then the others from the most work per trajectory to the least, configs of equal
 * work in the plan's order. Longest first: the shards left when processes run out of work one by one are then the
 * shortest, so they finish closer together (with steps [10, 20, 40] the 40-step shards no longer come last). Each
 * config's shards stay in sample order; what is computed, and every output byte, is the same in any order.
 */
export function dispatchOrder(configs: readonly PlannedConfig[]): PlannedConfig[] {
  const rank = (c: PlannedConfig) => (c.role === 'reference' ? 0 : 1);
  // Array.prototype.sort is stable: ties keep the plan's order
  return [...configs].sort((a, b) => rank(a) - rank(b) || (rank(a) === 1 ? trajectoryCost(b) - trajectoryCost(a) : 0));
}

/** Object keys of a study's outputs, relative to the output root. */
export const studyKeys = {
  studyJson: (studyId: string) => `${studyId}/study.json`,
  shard: (studyId: string, configId: string, shard: string, table: 'steps' | 'samples' | 'states') => `${studyId}/shards/${configId}/${shard}.${table}.arrow`,
  manifest: (studyId: string, configId: string, shard: string) => `${studyId}/shards/${configId}/${shard}.manifest.json`,
  summary: (studyId: string) => `${studyId}/summary/summary.arrow`,
  curves: (studyId: string) => `${studyId}/summary/curves.arrow`,
  report: (studyId: string) => `${studyId}/summary/report.html`,
};
