/**
 * The sandboxed shard processor: BullMQ runs it in a forked child process, so the CPU/GPU-bound sampling never blocks
 * the worker's lock renewal. The child is reused across jobs; dataset, denoisers and training set stay cached per study.
 */
import { backendFromEnv, initBackend } from '@trajlab/backend';
import { exitWithParent, parsePayload, redisKeys, redisSettings, shardPayloadSchema, type ShardPayload } from '@trajlab/queue';
import { createContext, executeShard, type ShardManifest, type StudyContext } from '@trajlab/runner';
import { ModelFileError } from '@trajlab/models';
import { openStore, preloadS3Sdk } from '@trajlab/storage';
import { planStudy, prefetchRemoteData, resolveStudyText } from '@trajlab/study';
import type { SandboxedJob } from 'bullmq';
import { Redis } from 'ioredis';

/** An error that retrying cannot fix (bad payload, bad spec or data, cancellation): the job fails at once. */
function unrecoverable(message: string): Error {
  const e = new Error(message);
  e.name = 'UnrecoverableError';
  return e;
}

const contexts = new Map<string, StudyContext>();
// This process starts before any job (see warmSandbox): the tensor backend and the AWS SDK, which every study needs
// (studies write to S3 when distributed), load while it waits. A backend that cannot load fails the first job.
const backendReady = (async () => initBackend(backendFromEnv()))();
backendReady.catch(() => {});
preloadS3Sdk();
let redis: Redis | null = null;

/** The study's device state, built once per child process and study (the last two studies are kept). */
async function contextFor(p: ShardPayload, jobId: string): Promise<StudyContext> {
  const cached = contexts.get(p.studyId);
  if (cached) return cached;
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
  let ctx: StudyContext;
  try {
    ctx = await createContext(resolved.study, resolved.data, plan);
  } catch (err) {
    // a model that cannot be loaded or run will not load on a retry either
    if (err instanceof ModelFileError) throw unrecoverable(`job ${jobId}: ${err.message}`);
    throw err;
  }
  if (contexts.size >= 2) {
    const [oldest] = contexts.keys();
    contexts.get(oldest!)?.dispose();
    contexts.delete(oldest!);
  }
  contexts.set(p.studyId, ctx);
  return ctx;
}

// A sandboxed child must not outlive its worker (see exitWithParent).
exitWithParent();

export default async function processShard(job: SandboxedJob): Promise<ShardManifest> {
  const jobId = String(job.id);
  let payload: ShardPayload;
  try {
    payload = parsePayload(shardPayloadSchema, job.data, jobId);
  } catch (err) {
    throw unrecoverable((err as Error).message);
  }
  await backendReady;
  if (!contexts.has(payload.studyId)) {
    try {
      await prefetchRemoteData(JSON.stringify(payload.spec));
    } catch (err) {
      throw unrecoverable(`job ${jobId}: ${(err as Error).message}`);
    }
  }
  redis ??= new Redis(redisSettings().connection);
  if (await redis.exists(redisKeys.cancel(payload.studyId))) throw unrecoverable(`study ${payload.studyId} was cancelled`);
  const ctx = await contextFor(payload, jobId);
  const config = ctx.plan.configs.find((c) => c.configId === payload.configId);
  const shard = config?.shards.find((s) => s.name === payload.shard.name && s.first === payload.shard.first && s.count === payload.shard.count);
  if (!config || !shard) throw unrecoverable(`job ${jobId}: config ${payload.configId} shard ${payload.shard.name} is not part of study ${payload.studyId}`);
  if (config.sigmas.length !== config.steps + 1) throw unrecoverable(`job ${jobId}: no sigmas for ${config.configId} in the payload (gits schedules are computed at submit)`);

  // Poll the cancel flag while sampling (the shard yields to the event loop once per time point).
  let cancelled = false;
  const poll = setInterval(() => {
    redis!
      .exists(redisKeys.cancel(payload.studyId))
      .then((n) => (cancelled ||= n > 0))
      .catch(() => {});
  }, 500);
  let lastReport = 0;
  try {
    const res = await executeShard(ctx, openStore(payload.out), config, shard, (done, total) => {
      // Checked at every time point, in the compute path itself: once the worker is gone, stop at once (sending
      // progress over the closed channel is what would otherwise keep this process spinning).
      if (process.send && !process.connected) process.exit(1);
      if (cancelled) throw unrecoverable(`study ${payload.studyId} was cancelled`);
      const now = Date.now();
      if (now - lastReport > 250 || done === total) {
        lastReport = now;
        job.updateProgress({ configId: config.configId, shard: shard.name, points: done, of: total, samples: shard.count }).catch(() => {});
      }
    });
    return res.manifest;
  } finally {
    clearInterval(poll);
  }
}
