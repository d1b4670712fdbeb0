/**
 * V8's heap growth in a process that computes (TRAJLAB_GC). A shard's big buffers (its trajectories, [rows, points,
 * dim], its Arrow columns) live for the whole shard and die together: they reach the old generation, and their bytes
 * count towards the old generation's limit until a full (mark-compact) collection frees them. V8 sets that limit after
 * each full collection to the live size times a factor it derives from how fast the program allocates JavaScript
 * objects; a sampling loop allocates few (its time goes to matrix products), so the factor stays small and full
 * collections come every few shards, their marking running on V8's helper threads. Measured on the perf study with one
 * process: 9-12 full collections with V8's own factor and 4-5 with the compute setting (512 trajectories), 38-41 and
 * 13-14 (2048). One process has the other core for those threads; two processes share both cores with them.
 */
import v8 from 'node:v8';
import { envChoice } from './env-choice.js';

/** `compute`: V8's heap grows by COMPUTE_HEAP_GROWING_PERCENT; `default`: V8's own heuristics. */
export const GC_CHOICES = ['compute', 'default'] as const;
export type GcChoice = (typeof GC_CHOICES)[number];

/** A TRAJLAB_GC value that is not one. */
export class GcChoiceError extends Error {
  override name = 'GcChoiceError';
}

/**
 * V8's `--heap-growing-percent` in a computing process: the old generation's limit after a full collection is the live
 * size times 1 + 300 / 100 = 4, V8's own largest dynamic factor (it uses it for programs that allocate fast).
 */
export const COMPUTE_HEAP_GROWING_PERCENT = 300;

/** TRAJLAB_GC, checked (default `compute`); an unknown value is an error naming the variable. */
export function gcFromEnv(env: NodeJS.ProcessEnv = process.env): GcChoice {
  return envChoice(env, 'TRAJLAB_GC', GC_CHOICES, 'compute', (message) => new GcChoiceError(message));
}

/**
 * Sets V8's heap growth for this process when TRAJLAB_GC is `compute` (a flag V8 reads at every full collection, so it
 * applies from the next one on); returns whether it did.
 */
export function tuneHeapForCompute(env: NodeJS.ProcessEnv = process.env): boolean {
  if (gcFromEnv(env) !== 'compute') return false;
  v8.setFlagsFromString(`--heap-growing-percent=${COMPUTE_HEAP_GROWING_PERCENT}`);
  return true;
}
