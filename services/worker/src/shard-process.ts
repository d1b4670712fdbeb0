/**
 * A worker's shard process: runs the shard jobs its worker hands it over IPC, so the CPU/GPU-bound sampling never
 * blocks the worker's lock renewal. It holds up to TRAJLAB_JOBS_PER_PROCESS jobs (2): one computes while another
 * waits for it or has its files uploaded (computations run one at a time, see OneAtATime). Holding more, it computes
 * the waiting jobs of one config together, as the embedded run does (ComputeBatches, up to half the jobs it holds).
 * Dataset, denoisers and training set stay cached per study (the last two studies).
 */
import { backendFromEnv, initBackend, shareNativeThreads } from '@trajlab/backend';
import { exitWithParent, parsePayload, pushTraceEvents, redisKeys, redisSettings, shardPayloadSchema, type ShardPayload } from '@trajlab/queue';
import {
  batchSpan,
  createContext,
  existingShard,
  ShardWrites,
  shardsPerBatch,
  spanEvent,
  spanStart,
  warmUp,
  warmUpEnabled,
  type ShardManifest,
  type SpanStart,
  type StudyContext,
  type TraceEvent,
} from '@trajlab/runner';
import { ModelFileError } from '@trajlab/models';
import { preloadS3Sdk, sharedStore } from '@trajlab/storage';
import { planStudy, prefetchRemoteData, resolveStudyText } from '@trajlab/study';
import { Redis } from 'ioredis';
import { hostname } from 'node:os';
import { ComputeBatches, type ShardForCompute } from './compute-batches.js';
import { namedError, type FromShardProcess, type ShardProgress, type ToShardProcess } from './messages.js';
import { OneAtATime } from './one-at-a-time.js';

/** An error that retrying cannot fix (bad payload, bad spec or data, cancellation): the job fails at once. */
const unrecoverable = (message: string) => namedError('UnrecoverableError', message);

const send = (m: FromShardProcess) => process.send?.(m);
// A shard process must not outlive its worker (see exitWithParent).
exitWithParent();
// This process starts before any job: the tensor backend and the AWS SDK, which every study needs (studies write to S3
// when distributed), load while it waits. A backend that cannot load fails the first job.
const backendReady = (async () => initBackend(backendFromEnv()))();
backendReady.catch(() => {});
preloadS3Sdk();
const compute = new OneAtATime();
/** The shard writes of this process under way (a shard waits for its reference's upload rather than computing it again). */
const writes = new ShardWrites();
let redis: Redis | null = null;

/** What every span of this process names for a distributed timeline (`submit --watch --trace`). */
const traceArgs = { host: hostname(), role: 'worker shard process' };
/** Pushes of spans under way: a job ends only once its spans are in Redis, before the study's watch reads them. */
const tracePushes = new Set<Promise<void>>();
/** Sends spans to their study's list; a timeline is not worth a job, so a failed push is dropped. */
function pushSpans(studyId: string, events: TraceEvent[]): void {
  if (!redis) return;
  const push = pushTraceEvents(redis, studyId, events).catch(() => {});
  tracePushes.add(push);
  void push.finally(() => tracePushes.delete(push));
}
/** A traced batch's compute, as a span on the timeline's main thread of this process. */
function traceCompute(jobs: ShardForCompute[], start: SpanStart, end: SpanStart): void {
  const span = batchSpan(jobs[0]!.config.configId, jobs.map((j) => j.shard));
  pushSpans(jobs[0]!.ctx.study.studyId, [spanEvent(start, end, span.name, 'batch', { ...span.args, ...traceArgs })]);
}
/**
 * The timeline's threads of traced jobs held at once (1, 2, ...): a job's span from its arrival to its end covers its
 * wait, compute and upload, and overlaps the other jobs this process holds.
 */
const traceSlots = new Set<number>();

/** Shard jobs on their way to the compute; those of one config waiting together are computed as one batch. */
const batches = new ComputeBatches(compute, writes, (ids) => send({ type: 'batched', ids }), traceCompute);

/** A study's device state, shared by the jobs of that study; `users` counts the jobs holding it. */
interface CachedContext {
  ready: Promise<StudyContext>;
  users: number;
}
const contexts = new Map<string, CachedContext>();
/** Studies whose state is kept when no job holds it. */
const KEEP_STUDIES = 2;

/** Resolves, plans and builds a study's state (a compute-bound step: it waits for the shard computing). */
async function buildContext(p: ShardPayload, jobId: string): Promise<StudyContext> {
  try {
    await prefetchRemoteData(JSON.stringify(p.spec));
  } catch (err) {
    throw unrecoverable(`job ${jobId}: ${(err as Error).message}`);
  }
  let resolved;
  try {
    resolved = resolveStudyText(JSON.stringify(p.spec), `job ${jobId} spec`, p.baseDir);
  } catch (err) {
    throw unrecoverable(`job ${jobId}: ${(err as Error).message}`);
  }
  if (resolved.study.studyId !== p.studyId) {
    throw unrecoverable(`job ${jobId}: the spec resolves to study ${resolved.study.studyId}, not ${p.studyId} (did a dataset file change since submit?)`);
  }
  const plan = planStudy(resolved.study);
  for (const c of plan.configs) {
    const s = p.sigmas[c.configId];
    if (s) c.sigmas = s;
  }
  return compute.run(async () => {
    try {
      return await createContext(resolved.study, resolved.data, plan);
    } catch (err) {
      // a model that cannot be loaded or run will not load on a retry either
      if (err instanceof ModelFileError) throw unrecoverable(`job ${jobId}: ${err.message}`);
      throw err;
    }
  });
}

/** Holds the study's state for one job (built by the first job of the study); release it with releaseContext. */
function holdContext(p: ShardPayload, jobId: string): Promise<StudyContext> {
  let cached = contexts.get(p.studyId);
  if (!cached) {
    cached = { ready: buildContext(p, jobId), users: 0 };
    const entry = cached;
    // a state that failed to build is built again by the next job of the study
    entry.ready.catch(() => contexts.get(p.studyId) === entry && contexts.delete(p.studyId));
  }
  contexts.delete(p.studyId); // most recently used last
  contexts.set(p.studyId, cached);
  cached.users++;
  return cached.ready;
}

/** Ends a job's hold on its study's state; frees the least recently used states no job holds beyond KEEP_STUDIES. */
function releaseContext(studyId: string): void {
  const cached = contexts.get(studyId);
  if (cached) cached.users--;
  let surplus = contexts.size - KEEP_STUDIES;
  for (const [id, c] of contexts) {
    if (surplus <= 0) break;
    if (c.users > 0) continue;
    contexts.delete(id);
    c.ready.then((ctx) => ctx.dispose(), () => {});
    surplus--;
  }
}

/**
 * Runs one shard job; resolves with its manifest. `checked`, `batchAtMost`: see ToShardProcess. A job of a traced study
 * also sends its span (`job`, from its arrival here to its end, with how it ended) to the study's timeline.
 */
async function runJob(jobId: string, data: unknown, checked: boolean, batchAtMost: number, report: (p: ShardProgress) => void): Promise<ShardManifest> {
  let payload: ShardPayload;
  try {
    payload = parsePayload(shardPayloadSchema, data, jobId);
  } catch (err) {
    throw unrecoverable((err as Error).message);
  }
  if (!payload.trace) return (await runParsedJob(payload, jobId, checked, batchAtMost, report)).manifest;
  const start = spanStart();
  let slot = 1;
  while (traceSlots.has(slot)) slot++;
  traceSlots.add(slot);
  let outcome = 'failed';
  try {
    const { manifest, computed } = await runParsedJob(payload, jobId, checked, batchAtMost, report);
    outcome = computed ? 'computed' : 'reused';
    return manifest;
  } finally {
    traceSlots.delete(slot);
    const { configId, shard } = payload;
    pushSpans(payload.studyId, [spanEvent(start, spanStart(), `job ${configId} ${shard.name}`, 'job', { config: configId, shard: shard.name, samples: shard.count, job: jobId, outcome, ...traceArgs }, slot)]);
    await Promise.allSettled([...tracePushes]);
  }
}

/** runJob once the payload is valid; `computed`: the shard was computed here, not found complete in the store. */
async function runParsedJob(payload: ShardPayload, jobId: string, checked: boolean, batchAtMost: number, report: (p: ShardProgress) => void): Promise<{ manifest: ShardManifest; computed: boolean }> {
  await backendReady;
  redis ??= new Redis(redisSettings().connection);
  if (await redis.exists(redisKeys.cancel(payload.studyId))) throw unrecoverable(`study ${payload.studyId} was cancelled`);
  const studyId = payload.studyId;
  try {
    const ctx = await holdContext(payload, jobId);
    const config = ctx.plan.configs.find((c) => c.configId === payload.configId);
    const shard = config?.shards.find((s) => s.name === payload.shard.name && s.first === payload.shard.first && s.count === payload.shard.count);
    if (!config || !shard) throw unrecoverable(`job ${jobId}: config ${payload.configId} shard ${payload.shard.name} is not part of study ${studyId}`);
    if (config.sigmas.length !== config.steps + 1) throw unrecoverable(`job ${jobId}: no sigmas for ${config.configId} in the payload (gits schedules are computed at submit)`);

    // Poll the cancel flag while sampling (the shard yields to the event loop once per time point).
    let cancelled = false;
    const poll = setInterval(() => {
      redis!
        .exists(redisKeys.cancel(studyId))
        .then((n) => (cancelled ||= n > 0))
        .catch(() => {});
    }, 500);
    let lastReport = 0;
    try {
      const store = sharedStore(payload.out);
      // the worker skips the check on a fresh study's first delivery, but a reference shard may have been written by
      // another shard's job meanwhile (it computes the reference when missing): looked for here
      if (!(checked && !(payload.fresh && config.role === 'reference'))) {
        const existing = await existingShard(store, studyId, config, shard);
        if (existing) return { manifest: existing, computed: false };
      }
      let limit: number;
      try {
        limit = Math.max(1, Math.min(shardsPerBatch(ctx.study, ctx.plan), batchAtMost));
      } catch (err) {
        throw unrecoverable(`job ${jobId}: ${(err as Error).message}`);
      }
      const res = await batches.run({
        id: jobId,
        key: `${studyId}\n${payload.out}\n${config.configId}`,
        ctx,
        store,
        config,
        shard,
        limit,
        traced: payload.trace,
        onPoint: (done, total) => {
          // Checked at every time point, in the compute path itself: once the worker is gone, stop at once.
          if (!process.connected) process.exit(1);
          if (cancelled) throw unrecoverable(`study ${studyId} was cancelled`);
          const now = Date.now();
          if (now - lastReport > 250 || done === total) {
            lastReport = now;
            report({ configId: config.configId, shard: shard.name, points: done, of: total, samples: shard.count });
          }
        },
      });
      return { manifest: res.manifest, computed: true };
    } finally {
      clearInterval(poll);
    }
  } finally {
    releaseContext(studyId);
  }
}

/** Set by the first job: a process given work before it could warm up goes straight to it. */
let jobSeen = false;

process.on('message', (m: ToShardProcess) => {
  // cores lent by idle workers of this host: taken at once, between two steps of the computing job
  if (m.type === 'share') return backendReady.then(() => shareNativeThreads(m.share), () => {});
  if (m.type !== 'job') return;
  jobSeen = true;
  runJob(m.id, m.data, m.checked, m.batchAtMost, (progress) => send({ type: 'progress', id: m.id, progress })).then(
    (manifest) => send({ type: 'done', id: m.id, manifest }),
    (err: unknown) => send({ type: 'failed', id: m.id, name: err instanceof Error ? err.name : 'Error', message: err instanceof Error ? err.message : String(err) }),
  );
});
const ready = () => send({ type: 'ready' });
backendReady.then(ready, ready);

// While no job has come, the process warms up (runner's warmUp: a small study computed in memory and discarded), so
// its first job runs at the speed of the next ones. A job that comes meanwhile waits for it (it computes through the
// same OneAtATime). Skipped with TRAJLAB_WARM_UP=off, or when the backend failed (the jobs report that).
if (warmUpEnabled()) {
  backendReady.then(
    () => {
      if (jobSeen) return;
      compute.run(warmUp).then(
        (r) => send({ type: 'warmed-up', seconds: r.seconds }),
        (err: unknown) => send({ type: 'warm-up-failed', message: err instanceof Error ? err.message : String(err) }),
      );
    },
    () => {},
  );
}
