/**
 * A distributed study's timeline (`trajlab submit --watch --trace`): the workers' shard processes and the aggregator
 * push the spans of the study's jobs to one Redis list per study (redisKeys.trace), and the watching command takes them
 * when the study ends. Events are plain JSON objects here (runner's TraceEvent); this module only moves them.
 */
import type { Redis } from 'ioredis';
import { redisKeys } from './names.js';

/** How long a study's list is kept after its last push, should no watch take it. @defaultValue one day */
export const TRACE_LIST_TTL_SECONDS = 86_400;

/** Appends `events` to the study's list (one entry per push) and renews its expiry. Nothing is sent for none. */
export async function pushTraceEvents(redis: Redis, studyId: string, events: readonly object[]): Promise<void> {
  if (events.length === 0) return;
  const key = redisKeys.trace(studyId);
  await redis.multi().rpush(key, JSON.stringify(events)).expire(key, TRACE_LIST_TTL_SECONDS).exec();
}

/** Every event pushed for the study so far, in push order; the list is removed. */
export async function takeTraceEvents(redis: Redis, studyId: string): Promise<object[]> {
  const key = redisKeys.trace(studyId);
  const res = await redis.multi().lrange(key, 0, -1).del(key).exec();
  const entries = (res?.[0]?.[1] ?? []) as string[];
  return entries.flatMap((e) => JSON.parse(e) as object[]);
}
