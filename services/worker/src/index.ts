/**
 * trajlab worker: takes shard jobs from Redis (REDIS_URL) and runs them in forked shard processes.
 * TRAJLAB_WORKER_CONCURRENCY (default 1): shard processes. Scale by running more worker processes.
 * TRAJLAB_JOBS_PER_PROCESS (default 2): shard jobs a shard process holds at once; it computes one at a time, and checks
 * or uploads the others' files meanwhile (1: no overlap, the store is waited for between shards). Holding more, it
 * computes waiting jobs of one config together as one batch, of up to half the jobs it holds (see shardsPerBatch).
 * TRAJLAB_LOCK_MS (default 60000): job lock duration, also the interval of the stalled-job check.
 * TRAJLAB_LEND_CORES (default on): at a study's tail, the cores of this host's idle workers go to the native products
 * of its busy ones (HostCores); off: each shard process keeps its own threads.
 * SIGTERM/SIGINT: stop taking jobs, finish the ones held, exit.
 */
import { envChoice } from '@trajlab/backend/env-choice';
import { drainOnSignal, parsePayload, QUEUES, redisSettings, shardPayloadSchema } from '@trajlab/queue';
import { existingShard, type ShardManifest } from '@trajlab/runner';
import { preloadS3Sdk, sharedStore } from '@trajlab/storage';
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { HostCores } from './host-cores.js';
import { ShardProcesses } from './shard-processes.js';

/** An integer environment variable from `min` to `max` (none: `fallback`), or exit 2 naming it. */
function integerEnv(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(process.env[name] ?? fallback);
  if (Number.isInteger(value) && value >= min && value <= max) return value;
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
  process.stderr.write(`trajlab worker: ${name} must be an integer ${range}; got '${process.env[name]}'\n`);
  process.exit(2);
}

/** An on/off environment variable (none: `fallback`), or exit 2 naming it. */
function onOffEnv(name: string, fallback: 'on' | 'off'): boolean {
  try {
    return envChoice(process.env, name, ['on', 'off'] as const, fallback, (message) => new Error(message)) === 'on';
  } catch (err) {
    process.stderr.write(`trajlab worker: ${(err as Error).message}\n`);
    process.exit(2);
  }
}

const settings = redisSettings();
const processes = integerEnv('TRAJLAB_WORKER_CONCURRENCY', 1, 1, 256);
const jobsPerProcess = integerEnv('TRAJLAB_JOBS_PER_PROCESS', 2, 1, 16);
const lockMs = integerEnv('TRAJLAB_LOCK_MS', 60_000, 1000);
const lendCores = onOffEnv('TRAJLAB_LEND_CORES', 'on');
const log = (s: string) => process.stderr.write(`[worker ${process.pid}] ${s}\n`);
// compiled (dist/*.js): the shard process is compiled too, and needs no TypeScript loader
const entry = fileURLToPath(new URL(import.meta.url.endsWith('.js') ? './shard-process.js' : './shard-process.ts', import.meta.url));
// the shard processes load their code now, while the queue may still be empty
const shardProcesses = new ShardProcesses(entry, processes, log, jobsPerProcess);
preloadS3Sdk();
// at a study's tail, this host's idle workers lend their cores to the busy ones
const hostRedis = lendCores ? new Redis(settings.connection) : null;
hostRedis?.on('error', () => {}); // Redis errors are the BullMQ worker's to report
const host = hostname();
const hostCores = hostRedis
  ? new HostCores(hostRedis, host, `${process.pid}-${randomUUID().slice(0, 8)}`, processes, (share) => {
      shardProcesses.shareCores(share);
      log(share > 1 ? `host ${host} has idle cores: the shard processes computing use ${share}x their threads` : `host ${host}: the shard processes use their own threads again`);
    })
  : null;
if (hostCores) shardProcesses.onComputing = (n) => hostCores.setComputing(n);

/**
 * A shard job: its complete files, if the store has them already (a retry, a duplicate delivery, a study submitted
 * again), else the shard process computes it. The check runs here, where no computation holds up the event loop, so
 * its round trips overlap the shard computing before it; it is skipped on the first delivery of a freshly submitted
 * study's shard (see the payload's `fresh`).
 */
async function processShard(job: Job): Promise<ShardManifest> {
  let checked = false;
  try {
    const p = parsePayload(shardPayloadSchema, job.data, String(job.id));
    if (!(p.fresh && job.attemptsMade === 0)) {
      const existing = await existingShard(sharedStore(p.out), p.studyId, p, p.shard);
      if (existing) return existing;
    }
    checked = true;
  } catch {
    // a bad payload or an unreachable store: the shard process reports it (or checks again itself)
  }
  return shardProcesses.run(job, checked);
}

const worker = new Worker(QUEUES.shards, processShard, {
  connection: settings.connection,
  concurrency: processes * jobsPerProcess,
  // A job whose worker died (its lock was not renewed) is taken over by another worker within about two lock periods.
  lockDuration: lockMs,
  stalledInterval: lockMs,
  maxStalledCount: 2,
});
worker.on('ready', () => log(`ready: queue ${QUEUES.shards} on ${settings.display}, ${processes} shard process(es) x ${jobsPerProcess} jobs`));
worker.on('active', (job) => log(`start ${job.id}`));
worker.on('completed', (job) => log(`done ${job.id}`));
worker.on('failed', (job, err) => log(`failed ${job?.id}: ${err.message}`));
worker.on('error', (err) => log(`error: ${err.message}`));

drainOnSignal(worker, log, async () => {
  shardProcesses.close();
  await hostCores?.close();
  hostRedis?.disconnect();
});
shardProcesses.started().then((n) => log(`${n} shard process(es) started`));
