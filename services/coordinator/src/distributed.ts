import { initBackend, backendFromEnv } from '@trajlab/backend';
import { jobIds, QUEUES, redisKeys, redisSettings, studyFlow, takeTraceEvents } from '@trajlab/queue';
import { computeGitsSchedules, createContext, studyJson, type TraceEvent } from '@trajlab/runner';
import { openStore } from '@trajlab/storage';
import { loadNetwork } from '@trajlab/models';
import { planStudy, prefetchSpecFile, resolveStudyFile, resolveStudyText, studyKeys } from '@trajlab/study';
import { FlowProducer, Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { RedisUnavailableError, UnknownStudyError } from './errors.js';
import { formatDuration } from './format.js';

/** Connections of one CLI command: fail fast when Redis is down. */
export class Cluster {
  readonly redis: Redis;
  readonly shards: Queue;
  readonly aggregate: Queue;
  readonly display: string;
  private constructor(redis: Redis, display: string) {
    this.redis = redis;
    this.display = display;
    this.shards = new Queue(QUEUES.shards, { connection: redis });
    this.aggregate = new Queue(QUEUES.aggregate, { connection: redis });
  }

  static async connect(): Promise<Cluster> {
    const settings = redisSettings();
    const redis = new Redis({ ...settings.connection, lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 2, retryStrategy: (n) => (n > 2 ? null : 250) });
    redis.on('error', () => {});
    try {
      await redis.connect();
      await redis.ping();
    } catch (err) {
      redis.disconnect();
      throw new RedisUnavailableError(`cannot reach Redis at ${settings.display} (REDIS_URL): ${(err as Error).message.split('\n')[0]}`);
    }
    return new Cluster(redis, settings.display);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.shards.close(), this.aggregate.close()]);
    this.redis.disconnect();
  }
}

/** What the registry keeps of a submitted study. */
interface Registered {
  out: string;
  submittedAt: string;
  /** [configId, [[shardName, samples]]] */
  plan: [string, [string, number][]][];
}

async function registered(c: Cluster, studyId: string): Promise<Registered> {
  const h = await c.redis.hgetall(redisKeys.study(studyId));
  if (!h.out) throw new UnknownStudyError(`no study '${studyId}' was submitted to ${c.display}`);
  return { out: h.out, submittedAt: h.submittedAt!, plan: JSON.parse(h.plan!) as Registered['plan'] };
}

/**
 * Submits a study as a BullMQ flow; a second submission of the same spec adds nothing. Returns the study id.
 * `trace`: its jobs send their spans to the study's timeline in Redis (takeStudyTrace). @defaultValue false
 */
export async function submitStudy(specPath: string, out: string, log: (s: string) => void, trace = false): Promise<{ studyId: string; added: boolean }> {
  await prefetchSpecFile(specPath);
  const { study, data } = resolveStudyFile(specPath);
  const plan = planStudy(study);
  const store = openStore(out);
  const c = await Cluster.connect();
  try {
    const existing = await Job.fromId(c.aggregate, jobIds.aggregate(study.studyId));
    if (existing) {
      log(`study ${study.studyId} is already submitted (${await existing.getState()}); nothing added`);
      return { studyId: study.studyId, added: false };
    }
    const sigmas: Record<string, number[]> = {};
    let gits: unknown[] = [];
    const models = [study.models.denoiser, study.models.compare].filter((m) => m !== undefined);
    if (plan.configs.some((cfg) => cfg.gits)) {
      // GITS schedules come from teacher trajectories: computed once here, shipped to every shard in its payload
      // (building the context also loads and probes the models).
      const backend = await initBackend(backendFromEnv());
      log(`computing GITS schedules on ${backend.name}`);
      const ctx = await createContext(study, data, plan);
      try {
        gits = await computeGitsSchedules(ctx, plan.configs);
      } finally {
        ctx.dispose();
      }
      for (const cfg of plan.configs) if (cfg.gits) sigmas[cfg.configId] = cfg.sigmas;
    } else if (models.length > 0) {
      // models are loaded (and probed) here, so one that cannot run is refused before anything is queued
      await initBackend(backendFromEnv());
      await Promise.all(models.map((m) => loadNetwork(m.dir, m.file, m.contentHash)));
    }
    // no study.json yet: no run of this study has written anything (study.json is always written first)
    const fresh = !(await store.exists(studyKeys.studyJson(study.studyId)));
    await store.put(studyKeys.studyJson(study.studyId), studyJson(study, plan, null, { status: 'submitted', submittedAt: new Date().toISOString(), gits }));
    const reg: Registered = { out, submittedAt: new Date().toISOString(), plan: plan.configs.map((cfg) => [cfg.configId, cfg.shards.map((s) => [s.name, s.count])]) };
    await c.redis.hset(redisKeys.study(study.studyId), { out: reg.out, submittedAt: reg.submittedAt, plan: JSON.stringify(reg.plan) });
    await c.redis.sadd(redisKeys.studies(), study.studyId);
    await c.redis.del(redisKeys.cancel(study.studyId));
    const producer = new FlowProducer({ connection: c.redis });
    try {
      await producer.add(studyFlow(plan, { studyId: study.studyId, out, spec: study.spec as Record<string, unknown>, baseDir: study.baseDir, sigmas, fresh, trace }));
    } finally {
      await producer.close();
    }
    log(`submitted ${plan.totals.jobs} shard job(s) + 1 aggregate job to ${c.display}; outputs under ${store.locate(study.studyId)}`);
    return { studyId: study.studyId, added: true };
  } finally {
    await c.close();
  }
}

/** The spans the study's jobs sent to its timeline (submitted with `trace`); the list is removed from Redis. */
export async function takeStudyTrace(studyId: string): Promise<TraceEvent[]> {
  const c = await Cluster.connect();
  try {
    return (await takeTraceEvents(c.redis, studyId)) as TraceEvent[];
  } finally {
    await c.close();
  }
}

/** State of a study from its jobs. */
export interface StudyStatus {
  studyId: string;
  state: 'queued' | 'running' | 'complete' | 'failed' | 'cancelled';
  out: string;
  /**
   * Per config: `active` shards are held by a worker, `running` ones of them have started sampling (a worker's shard
   * process holds a second shard while it computes one).
   */
  configs: { configId: string; shards: number; done: number; active: number; running: number; failed: number; samplesDone: number; samples: number }[];
  samplesDone: number;
  samples: number;
  failures: { job: string; reason: string }[];
}

/**
 * The state of a study from its jobs, all read at once (commands issued together share round trips). `completed`: shard
 * job ids already seen completed by an earlier call (a completed job never changes state, so a watch need not read
 * them again), kept up to date here. @defaultValue none: every job is read
 */
export async function studyStatus(c: Cluster, studyId: string, completed?: Set<string>): Promise<StudyStatus> {
  const reg = await registered(c, studyId);
  const parentRead = Job.fromId(c.aggregate, jobIds.aggregate(studyId)).then(async (job) => ({ job, state: job ? await job.getState() : 'unknown' }));
  const cancelRead = c.redis.exists(redisKeys.cancel(studyId));
  // every shard job not known complete, with its state: one batch of concurrent reads instead of one at a time
  const shardReads = reg.plan.map(([configId, shards]) =>
    Promise.all(
      shards.map(async ([name]) => {
        const id = jobIds.shard(studyId, configId, name);
        if (completed?.has(id)) return { job: undefined, state: 'completed' as const };
        const job = await Job.fromId(c.shards, id);
        const state = job ? await job.getState() : 'unknown';
        if (state === 'completed') completed?.add(id);
        return { job, state };
      }),
    ),
  );
  const [{ job: parent, state: parentState }, cancelCount, perConfig] = await Promise.all([parentRead, cancelRead, Promise.all(shardReads)]);
  const cancelled = cancelCount > 0;
  const failures: StudyStatus['failures'] = [];
  let anyStarted = false;
  const configs: StudyStatus['configs'] = [];
  for (const [ci, [configId, shards]] of reg.plan.entries()) {
    const row = { configId, shards: shards.length, done: 0, active: 0, running: 0, failed: 0, samplesDone: 0, samples: 0 };
    for (const [k, { job, state }] of perConfig[ci]!.entries()) {
      const samples = shards[k]![1];
      row.samples += samples;
      if (state === 'completed') {
        row.done++;
        row.samplesDone += samples;
        anyStarted = true;
      } else if (!job) {
        continue;
      } else if (state === 'active') {
        row.active++;
        anyStarted = true;
        const p = job.progress as { points?: number; of?: number } | number;
        if (typeof p === 'object' && p.of) {
          row.running++;
          row.samplesDone += (samples * (p.points ?? 0)) / p.of;
        }
      } else if (state === 'failed') {
        row.failed++;
        failures.push({ job: job.id!, reason: job.failedReason });
      }
    }
    configs.push(row);
  }
  const samplesDone = configs.reduce((a, r) => a + r.samplesDone, 0);
  const samples = configs.reduce((a, r) => a + r.samples, 0);
  let state: StudyStatus['state'] = anyStarted ? 'running' : 'queued';
  if (parentState === 'completed') state = 'complete';
  if (parentState === 'failed' || failures.length > 0) state = 'failed';
  if (cancelled) state = 'cancelled';
  if (parentState === 'failed' && failures.length === 0 && parent?.failedReason) failures.push({ job: parent.id!, reason: parent.failedReason });
  return { studyId, state, out: reg.out, configs, samplesDone, samples, failures };
}

function bar(frac: number, width = 20): string {
  const f = Math.max(0, Math.min(width, Math.round(frac * width)));
  return `[${'#'.repeat(f)}${'.'.repeat(width - f)}]`;
}

/** Renders a status as text: one bar per config, then the total with rate and ETA. */
export function renderStatus(s: StudyStatus, rate: number | null): string {
  const w = Math.max(...s.configs.map((c) => c.configId.length), 6);
  const lines = s.configs.map(
    (c) => `  ${c.configId.padEnd(w)} ${bar(c.samplesDone / Math.max(1, c.samples))} ${c.done}/${c.shards} shards${c.running ? `, ${c.running} running` : ''}${c.active > c.running ? `, ${c.active - c.running} held` : ''}${c.failed ? `, ${c.failed} FAILED` : ''}`,
  );
  const frac = s.samplesDone / Math.max(1, s.samples);
  const eta = rate && rate > 0 ? formatDuration(((s.samples - s.samplesDone) / rate) * 1000) : '?';
  lines.push(`${s.studyId}: ${s.state} ${bar(frac)} ${(100 * frac).toFixed(0)}%  ${Math.round(s.samplesDone)}/${s.samples} trajectories${rate !== null ? `  ${rate.toFixed(1)} traj/s  ETA ${eta}` : ''}`);
  for (const f of s.failures) lines.push(`  failure: ${f.job}: ${f.reason}`);
  return lines.join('\n');
}

/**
 * Wakes a waiting watch as soon as the study's aggregation job ends (BullMQ queue events), so a finished study is
 * reported at once instead of at the next poll. A missed event only costs one polling interval.
 */
class AggregationEnd {
  private readonly events: QueueEvents;
  private ended = false;
  private wake: (() => void) | null = null;

  constructor(studyId: string) {
    this.events = new QueueEvents(QUEUES.aggregate, { connection: redisSettings().connection });
    this.events.on('error', () => {}); // polling still works without events
    const onEnd = ({ jobId }: { jobId: string }) => {
      if (jobId !== jobIds.aggregate(studyId)) return;
      this.ended = true;
      this.wake?.();
    };
    this.events.on('completed', onEnd);
    this.events.on('failed', onEnd);
  }

  ready(): Promise<unknown> {
    return this.events.waitUntilReady().catch(() => {});
  }

  /** Resolves after `ms`, or earlier when the aggregation ends (or has ended since the last call). */
  wait(ms: number): Promise<void> {
    if (this.ended) {
      this.ended = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        this.ended = false;
        done();
      };
    });
  }

  close(): Promise<void> {
    return this.events.close().catch(() => {});
  }
}

/** Polls a study until it completes, fails or is cancelled, printing progress. Returns the final status. */
export async function watchStudy(studyId: string, write: (s: string) => void, intervalMs = 1000, tty = Boolean(process.stderr.isTTY)): Promise<StudyStatus> {
  const c = await Cluster.connect();
  const end = new AggregationEnd(studyId);
  await end.ready();
  try {
    const t0 = Date.now();
    let first: number | null = null;
    let lastPrinted = '';
    // shard jobs seen completed: not read again at the next polls
    const completed = new Set<string>();
    for (;;) {
      const s = await studyStatus(c, studyId, completed);
      first ??= s.samplesDone;
      const elapsed = (Date.now() - t0) / 1000;
      const rate = elapsed > 2 ? (s.samplesDone - first) / elapsed : null;
      const text = renderStatus(s, rate);
      if (tty) write(`\x1b[2J\x1b[H${text}\n`);
      else if (text.split('\n').at(-1) !== lastPrinted.split('\n').at(-1) || s.state !== 'running') write(`${text}\n`);
      lastPrinted = text;
      if (s.state === 'complete' || s.state === 'failed' || s.state === 'cancelled') return s;
      await end.wait(intervalMs);
    }
  } finally {
    await Promise.all([end.close(), c.close()]);
  }
}

/** Every submitted study with its state. */
export async function listStudies(): Promise<StudyStatus[]> {
  const c = await Cluster.connect();
  try {
    const ids = (await c.redis.smembers(redisKeys.studies())).sort();
    return await Promise.all(ids.map((id) => studyStatus(c, id)));
  } finally {
    await c.close();
  }
}

export async function oneStatus(studyId: string): Promise<StudyStatus> {
  const c = await Cluster.connect();
  try {
    return await studyStatus(c, studyId);
  } finally {
    await c.close();
  }
}

async function waitNoActive(c: Cluster, studyId: string, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const s = await studyStatus(c, studyId);
    if (s.configs.every((r) => r.active === 0)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Cancels a study: sets its cancel flag (running shards stop at their next time point and fail without retry), waits
 * for running shards to stop, then removes its jobs. Finished shard files stay in the store.
 */
export async function cancelStudy(studyId: string, timeoutMs = 60_000): Promise<void> {
  const c = await Cluster.connect();
  try {
    await registered(c, studyId);
    await c.redis.set(redisKeys.cancel(studyId), new Date().toISOString());
    await waitNoActive(c, studyId, timeoutMs);
    // the aggregation may have started just before the flag was set (every shard already done): its job is locked
    // until it finishes, so removal is retried until then
    const t0 = Date.now();
    for (;;) {
      const parent = await Job.fromId(c.aggregate, jobIds.aggregate(studyId));
      try {
        await parent?.remove({ removeChildren: true });
        break;
      } catch (err) {
        if (!/locked/.test((err as Error).message) || Date.now() - t0 > timeoutMs) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await c.close();
  }
}

/**
 * Retries a failed or cancelled study: its flow is removed and added again under the same job ids; complete shards are
 * found with matching manifests and reused, so only the failed (or never run) shards compute.
 */
export async function retryStudy(studyId: string, log: (s: string) => void): Promise<void> {
  const c = await Cluster.connect();
  try {
    const reg = await registered(c, studyId);
    const before = await studyStatus(c, studyId);
    if (before.state === 'complete') {
      log(`study ${studyId} is complete; nothing to retry`);
      return;
    }
    await waitNoActive(c, studyId, 60_000);
    const parent = await Job.fromId(c.aggregate, jobIds.aggregate(studyId));
    // The flow's shard payloads are identical for every shard but their (config, shard): take them from any child.
    let template: Record<string, unknown> | null = null;
    for (const [configId, shards] of reg.plan) {
      for (const [name] of shards) {
        const j = await Job.fromId(c.shards, jobIds.shard(studyId, configId, name));
        if (j) {
          template = j.data as Record<string, unknown>;
          break;
        }
      }
      if (template) break;
    }
    if (!template) throw new Error(`no job of study ${studyId} is left to retry from; submit the spec again`);
    await parent?.remove({ removeChildren: true });
    await c.redis.del(redisKeys.cancel(studyId));
    const { study } = resolveStudyText(JSON.stringify(template.spec), `retry of ${studyId}`, template.baseDir as string);
    const plan = planStudy(study);
    const producer = new FlowProducer({ connection: c.redis });
    try {
      await producer.add(studyFlow(plan, { studyId, out: reg.out, spec: template.spec as Record<string, unknown>, baseDir: template.baseDir as string, sigmas: (template.sigmas ?? {}) as Record<string, number[]>, fresh: false }));
    } finally {
      await producer.close();
    }
    log(`study ${studyId} resubmitted: ${before.failures.length} failed shard(s) will run again, complete shards are reused`);
  } finally {
    await c.close();
  }
}

/** The output root of a submitted study (for aggregate/show without --out). */
export async function registeredOut(studyId: string): Promise<string> {
  const c = await Cluster.connect();
  try {
    return (await registered(c, studyId)).out;
  } finally {
    await c.close();
  }
}
