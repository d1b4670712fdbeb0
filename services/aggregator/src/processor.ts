/**
 * The sandboxed aggregate processor: merges a finished study's shards into summary.arrow and curves.arrow, then the
 * report. While it waits for a study's aggregate job, it folds the study's shards that have finished (EarlyFolds).
 */
import { aggregatePayloadSchema, exitWithParent, parsePayload, pushTraceEvents, QUEUES, redisKeys, redisSettings, type AggregatePayload } from '@trajlab/queue';
import { writeReport } from '@trajlab/report';
import { aggregateFinishedStudy, EarlyFolds, TraceRecorder, warmUpAggregation, warmUpEnabled } from '@trajlab/runner';
import { preloadS3Sdk, sharedStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';
import { QueueEvents, type SandboxedJob } from 'bullmq';
import { Redis } from 'ioredis';
import { hostname, setPriority } from 'node:os';
import { earlyFoldMode } from './early-fold-mode.js';

// A sandboxed child must not outlive its worker (see exitWithParent).
exitWithParent();
// it starts before any job (see warmSandbox): the AWS SDK loads while it waits
preloadS3Sdk();

const early = new EarlyFolds({ openStore: sharedStore });
const mode = earlyFoldMode();
/**
 * Folding early competes with the workers where they share the machine (measured on 2 cores: at normal priority it cost
 * them more than it saved at the end). In `background` mode this process waits at the lowest priority, so it folds in
 * the CPU time the workers leave, and runs a job at the usual one. Only a process that may raise its priority again
 * (root) does so; any other folds at the usual priority.
 */
const background = mode === 'background' && process.getuid?.() === 0;
const priority = (value: number) => {
  if (!background) return;
  try {
    setPriority(value);
  } catch {
    // not permitted after all: stays where it is
  }
};
priority(19);

/** Follows the shards queue: each completed shard job (its return value is the shard's manifest) is folded early. */
function followShards(): void {
  const connection = redisSettings().connection;
  const redis = new Redis({ ...connection, lazyConnect: true });
  redis.on('error', () => {}); // early folding is an optimisation: without Redis the jobs aggregate everything
  const events = new QueueEvents(QUEUES.shards, { connection });
  events.on('error', () => {});
  const outs = new Map<string, Promise<string | null>>();
  events.on('completed', ({ returnvalue }) => {
    const m = returnvalue as unknown as { studyId?: unknown; configId?: unknown; shard?: unknown } | null;
    if (!m || typeof m.studyId !== 'string' || typeof m.configId !== 'string' || typeof m.shard !== 'string') return;
    const { studyId, configId, shard } = m as { studyId: string; configId: string; shard: string };
    // where the study writes: registered at submit
    let out = outs.get(studyId);
    if (!out) {
      out = redis.hget(redisKeys.study(studyId), 'out').catch(() => null);
      outs.set(studyId, out);
      if (outs.size > 100) outs.delete(outs.keys().next().value!);
    }
    out.then((o) => o && early.shardDone(studyId, configId, shard, o)).catch(() => {});
  });
}
if (mode !== 'off') followShards();

/**
 * While no study has come, the fold, the aggregation and the report run over a small made-up study (runner's
 * warmUpAggregation), so that V8 has optimised them before the first study's end waits for them; a job waits for it
 * to finish (well under a second). A failure only costs the warm-up. TRAJLAB_WARM_UP=off skips it, as the workers'.
 */
const warmedUp = warmUpEnabled()
  ? warmUpAggregation().then(
      (r) => void process.stderr.write(`[aggregation ${process.pid}] warmed up in ${r.seconds.toFixed(2)} s (${r.files} shard files folded)\n`),
      (err: unknown) => void process.stderr.write(`[aggregation ${process.pid}] warm-up failed: ${(err as Error).message}\n`),
    )
  : Promise.resolve();

export default async function processAggregate(job: SandboxedJob): Promise<{ summary: string; curves: string; report: string; foldedBefore: number }> {
  const p = parsePayload(aggregatePayloadSchema, job.data, String(job.id));
  priority(0);
  try {
    await warmedUp;
    return await aggregate(p);
  } finally {
    priority(19);
  }
}

/**
 * The aggregation of one study, the fold of its shards so far taken over, then the report. A traced study (`submit
 * --watch --trace`) gets the spans of both in its timeline, before the job ends.
 */
async function aggregate(p: AggregatePayload): Promise<{ summary: string; curves: string; report: string; foldedBefore: number }> {
  const trace = new TraceRecorder(p.trace);
  try {
    return await aggregateTraced(p, trace);
  } finally {
    if (p.trace) await pushSpans(p.studyId, trace);
  }
}

/** Sends the aggregation's spans to the study's timeline; a timeline is not worth the job, so a failure is dropped. */
async function pushSpans(studyId: string, trace: TraceRecorder): Promise<void> {
  const redis = new Redis({ ...redisSettings().connection, lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  try {
    const args = { host: hostname(), role: 'aggregator' };
    await pushTraceEvents(redis, studyId, trace.take().map((e) => ({ ...e, args: { ...e.args, ...args } })));
  } catch {
    // dropped
  } finally {
    redis.disconnect();
  }
}

/** aggregate's work, its two parts recorded as spans in `trace` (a disabled recorder when the study is not traced). */
async function aggregateTraced(p: AggregatePayload, trace: TraceRecorder): Promise<{ summary: string; curves: string; report: string; foldedBefore: number }> {
  const raw = sharedStore(p.out);
  // the shards folded while the study ran, and the store that read them (the report reads their samples from memory)
  const { store, ...paths } = await trace.span('aggregation', 'aggregation', () => aggregateFinishedStudy(raw, p.studyId, p.out, early));
  const key = studyKeys.studyJson(p.studyId);
  // study.json as it is now, not as the aggregation read it
  const doc = JSON.parse(new TextDecoder().decode(await raw.get(key))) as Record<string, unknown>;
  await store.put(key, new TextEncoder().encode(`${JSON.stringify({ ...doc, status: 'complete', completedAt: new Date().toISOString() }, null, 2)}\n`));
  return { ...paths, report: await trace.span('report', 'aggregation', () => writeReport(store, p.studyId)) };
}
