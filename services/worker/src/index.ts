/**
 * trajlab worker: takes shard jobs from Redis (REDIS_URL) and runs them in a sandboxed child process.
 * One job at a time per process by default (TRAJLAB_WORKER_CONCURRENCY); scale by running more processes.
 * SIGTERM/SIGINT: stop taking jobs, finish the current one, exit.
 */
import { drainOnSignal, QUEUES, redisSettings } from '@trajlab/queue';
import { Worker } from 'bullmq';
import { fileURLToPath } from 'node:url';

const settings = redisSettings();
const concurrency = Number(process.env.TRAJLAB_WORKER_CONCURRENCY ?? 1);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  process.stderr.write(`trajlab worker: TRAJLAB_WORKER_CONCURRENCY must be a positive integer; got '${process.env.TRAJLAB_WORKER_CONCURRENCY}'\n`);
  process.exit(2);
}
const processor = fileURLToPath(new URL('./processor.ts', import.meta.url));
const worker = new Worker(QUEUES.shards, processor, {
  connection: settings.connection,
  concurrency,
  useWorkerThreads: false,
  // Sandboxed: a stalled job (its worker died) is taken over after the lock expires.
  lockDuration: 60_000,
  maxStalledCount: 2,
});
const log = (s: string) => process.stderr.write(`[worker ${process.pid}] ${s}\n`);
worker.on('ready', () => log(`ready: queue ${QUEUES.shards} on ${settings.display}, concurrency ${concurrency}`));
worker.on('active', (job) => log(`start ${job.id}`));
worker.on('completed', (job) => log(`done ${job.id}`));
worker.on('failed', (job, err) => log(`failed ${job?.id}: ${err.message}`));
worker.on('error', (err) => log(`error: ${err.message}`));

drainOnSignal(worker, log);
