import type { ShardManifest } from '@trajlab/runner';

/**
 * An error with the given name (errors cross the IPC channel as name and message; BullMQ fails an UnrecoverableError's
 * job without retries).
 */
export function namedError(name: string, message: string): Error {
  const err = new Error(message);
  err.name = name;
  return err;
}

/** Progress of a shard job, as `trajlab watch` reads it from the job. */
export interface ShardProgress {
  configId: string;
  shard: string;
  /** Time points done and in all (over the shard's samples). */
  points: number;
  of: number;
  samples: number;
}

/**
 * What the worker sends its shard process: a job to run (the process holds up to TRAJLAB_JOBS_PER_PROCESS at a time);
 * `checked`: the worker found no complete files of the shard in the store just before, or the shard belongs to a study
 * submitted fresh (see the payload's `fresh`) and this is its first delivery; `batchAtMost`: the most jobs a batch
 * this job starts may hold (half the jobs a process holds, see ComputeBatches).
 */
export type ToShardProcess =
  | { type: 'job'; id: string; data: unknown; checked: boolean; batchAtMost: number }
  /** From its next step on, `share` times its native products' threads (shareNativeThreads; see HostCores). */
  | { type: 'share'; share: number };

/** What a shard process sends its worker. */
export type FromShardProcess =
  /** Loaded (tensor backend, AWS SDK), waiting for jobs. */
  | { type: 'ready' }
  /** Its warm-up (runner's warmUp) is done, in `seconds`. */
  | { type: 'warmed-up'; seconds: number }
  /** Its warm-up failed (the process still takes jobs: each reports its own errors). */
  | { type: 'warm-up-failed'; message: string }
  | { type: 'progress'; id: string; progress: ShardProgress }
  /** Jobs (by id, in sample order) computed together as one batch of the denoiser. */
  | { type: 'batched'; ids: string[] }
  | { type: 'done'; id: string; manifest: ShardManifest }
  /** `name` is the error's (an UnrecoverableError fails the job without retries). */
  | { type: 'failed'; id: string; name: string; message: string };
