import { z } from 'zod';

/**
 * Job payloads, validated when enqueued and again by the worker (a payload pushed into the queue by anything else
 * gets a clear error naming the job and the field).
 */

const studyId = z.string().regex(/^[a-z0-9][a-z0-9-]*-[0-9a-f]{10}$/, 'must be <name>-<10 hex>');
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.+_-]*$/, 'must be a plain slug');
const out = z.string().min(1).refine((v) => !/^[a-z][a-z0-9+.-]*:\/\//i.test(v) || v.startsWith('s3://'), 'must be a local path or s3://bucket/prefix');

export const shardPayloadSchema = z.strictObject({
  studyId,
  /** Output root (directory or s3://bucket/prefix). */
  out,
  /** The resolved spec (JSON object, defaults filled): the worker resolves it again and must reach the same study id. */
  spec: z.record(z.string(), z.unknown()),
  /** Directory relative dataset paths are resolved against (the spec file's, on the submitting machine). */
  baseDir: z.string().min(1),
  configId: name,
  shard: z.strictObject({ index: z.number().int().min(0), first: z.number().int().min(0), count: z.number().int().positive(), name }),
  /** Sigmas of configs whose schedule is computed at submit time (gits), by config id. */
  sigmas: z.record(z.string(), z.array(z.number().positive()).min(2)).default({}),
  /**
   * No output of the study existed when it was submitted (no study.json): on its first delivery the shard's files are
   * not looked for in the store, saving a request per shard (they cannot be there: a shard is written by its own job,
   * or, for the reference config, by a shard that needs it first, so reference shards are always looked for). Retries
   * and `trajlab retry` look for them as always. @defaultValue false
   */
  fresh: z.boolean().default(false),
  /**
   * `trajlab submit --watch --trace`: the job's spans (its compute and the job as a whole) go to the study's trace list
   * in Redis (redisKeys.trace). @defaultValue false
   */
  trace: z.boolean().default(false),
});
export type ShardPayload = z.infer<typeof shardPayloadSchema>;

/** `trace`: the aggregation's and the report's spans go to the study's trace list (see the shard payload). */
export const aggregatePayloadSchema = z.strictObject({ studyId, out, trace: z.boolean().default(false) });
export type AggregatePayload = z.infer<typeof aggregatePayloadSchema>;

/** A job payload that violates its schema. */
export class PayloadError extends Error {
  override name = 'PayloadError';
}

/** Validates a payload; the error names the job and every offending field. */
export function parsePayload<T>(schema: z.ZodType<T>, data: unknown, jobId: string): T {
  const res = schema.safeParse(data);
  if (res.success) return res.data;
  const problems = res.error.issues.map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; ');
  throw new PayloadError(`job ${jobId}: invalid payload (${problems})`);
}
