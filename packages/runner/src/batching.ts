import { nativeMatMulActive } from '@trajlab/backend';
import type { ResolvedStudy, StudyPlan } from '@trajlab/study';

/** A TRAJLAB_SHARD_BATCH value that is not one. */
export class ShardBatchSettingError extends Error {
  override name = 'ShardBatchSettingError';
}

/**
 * How many consecutive shards of a config this process computes as one batch of the denoiser (runShardBatch): the
 * plan's `shardsPerBatch` (up to BATCH_ROWS samples within memoryBudgetMB), capped by TRAJLAB_SHARD_BATCH (`auto`, the
 * default; `off` or 1: shard by shard; a positive integer: at most that many), and 1 wherever a row's result could
 * depend on the rows computed with it, which would make the numbers depend on the batching:
 * - the matrix products are not the native row-stable ones (TRAJLAB_BLAS=off or no binding: wasm's own kernel, or
 *   tfjs-node, may round a row differently in another batch);
 * - a trained network (`tfjs`) denoises or compares (its convolutions are not row-stable either);
 * - certified pruning is on (each shard's manifest counts the training points it kept, which a batch would mix).
 * Each shard's files are the same bytes either way (tests compare them).
 */
export function shardsPerBatch(study: ResolvedStudy, plan: StudyPlan, env: NodeJS.ProcessEnv = process.env): number {
  const cap = batchCap(env);
  const { denoiser, compare } = study.spec;
  const rowStable = nativeMatMulActive() && denoiser.kind !== 'tfjs' && compare?.kind !== 'tfjs' && !(denoiser.kind === 'optimal' && denoiser.pruning);
  return rowStable ? Math.max(1, Math.min(cap, plan.shardsPerBatch)) : 1;
}

/** TRAJLAB_SHARD_BATCH as a cap on the shards per batch (Infinity: the plan's). */
function batchCap(env: NodeJS.ProcessEnv): number {
  const v = (env.TRAJLAB_SHARD_BATCH ?? 'auto').trim();
  if (v === 'auto' || v === '') return Number.POSITIVE_INFINITY;
  if (v === 'off') return 1;
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new ShardBatchSettingError(`TRAJLAB_SHARD_BATCH must be auto, off or a positive integer (shards per batch at most); got '${env.TRAJLAB_SHARD_BATCH}'`);
  return Number(v);
}
