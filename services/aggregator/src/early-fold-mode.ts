/** How the aggregator folds a study's shards while the study runs (TRAJLAB_EARLY_FOLD). */
export const EARLY_FOLD_MODES = ['background', 'normal', 'off'] as const;
export type EarlyFoldMode = (typeof EARLY_FOLD_MODES)[number];

/**
 * TRAJLAB_EARLY_FOLD: `background` (the default) folds at the lowest CPU priority, so on a machine the workers share it
 * uses only the CPU time they leave (what is left waits for the study's aggregate job); `normal` folds at the usual
 * priority (an aggregator with cores of its own); `off` aggregates everything when the job comes. Throws an error
 * naming the variable for any other value.
 */
export function earlyFoldMode(env: NodeJS.ProcessEnv = process.env): EarlyFoldMode {
  const value = env.TRAJLAB_EARLY_FOLD ?? 'background';
  if ((EARLY_FOLD_MODES as readonly string[]).includes(value)) return value as EarlyFoldMode;
  throw new Error(`TRAJLAB_EARLY_FOLD must be one of ${EARLY_FOLD_MODES.join(', ')}; got '${value}'`);
}
