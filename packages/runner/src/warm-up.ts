/**
 * A warm-up for a process that waits for work (a worker's shard process before its first job): a small study computed
 * in memory and thrown away. A fresh process runs its first shard ~0.1 s slower than the next ones and builds its
 * first study's state ~0.08 s slower (measured on a 2-core VM): V8 has not yet compiled and optimised the sampling,
 * metric and table code, and the process has not yet touched the memory it then reuses. Spent while the process
 * would otherwise wait, that time comes off its first job.
 */
import { planStudy, resolveStudyText } from '@trajlab/study';
import { createContext } from './context.js';
import { runShard } from './shard.js';

/**
 * The warm-up study: one shard each of Euler and Heun (the first- and second-order paths every solver shares) over a
 * synthetic mixture of image size (784 values, as Fashion-MNIST) with the optimal denoiser and every metric on, the
 * default of a study. Small enough to take a fraction of a second.
 */
export const WARM_UP_SPEC = {
  name: 'warm-up',
  samples: 32,
  shardSize: 32,
  dataset: { kind: 'gmm', dim: 784, components: 4, n: 256 },
  denoiser: { kind: 'optimal' },
  solvers: [
    { solver: 'euler', steps: 6 },
    { solver: 'heun', steps: 3 },
  ],
  keepStates: 0,
} as const;

/**
 * Whether the services' processes warm up while they wait for work (a worker's shard processes: warmUp; the
 * aggregator's: warmUpAggregation): yes unless `TRAJLAB_WARM_UP` is `off`. @defaultValue env: process.env
 */
export function warmUpEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.TRAJLAB_WARM_UP ?? '').trim().toLowerCase() !== 'off';
}

/** What a warm-up did. */
export interface WarmUpResult {
  /** Shards computed (and discarded). */
  shards: number;
  /** Wall-clock seconds it took. */
  seconds: number;
}

/**
 * Computes WARM_UP_SPEC's shards in this process and discards them: nothing is written anywhere, and every tensor it
 * made is freed. Needs the tensor backend initialised.
 */
export async function warmUp(): Promise<WarmUpResult> {
  const t0 = performance.now();
  const { study, data } = resolveStudyText(JSON.stringify(WARM_UP_SPEC), 'warm-up spec', process.cwd());
  const plan = planStudy(study);
  const ctx = await createContext(study, data, plan);
  let shards = 0;
  try {
    for (const config of plan.configs) {
      await runShard(ctx, config, config.shards[0]!);
      shards++;
    }
  } finally {
    ctx.dispose();
  }
  return { shards, seconds: (performance.now() - t0) / 1000 };
}
