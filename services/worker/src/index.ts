/**
 * trajlab worker: takes shard jobs from Redis (REDIS_URL) and runs them in a sandboxed child process.
 * One job at a time per process by default (TRAJLAB_WORKER_CONCURRENCY); scale by running more processes.
 * TRAJLAB_LOCK_MS (default 60000): job lock duration, also the interval of the stalled-job check.
 * SIGTERM/SIGINT: stop taking jobs, finish the current one, exit.
 */
import { drainOnSignal, QUEUES, redisSettings, warmSandbox } from '@trajlab/queue';
import { Worker } from 'bullmq';
import { fileURLToPath } from 'node:url';

const settings = redisSettings();
const concurrency = Number(process.env.TRAJLAB_WORKER_CONCURRENCY ?? 1);
if (!Number.isInteger(concurrency) || concurrency < 1) {
  process.stderr.write(`trajlab worker: TRAJLAB_WORKER_CONCURRENCY must be a positive integer; got '${process.env.TRAJLAB_WORKER_CONCURRENCY}'\n`);
  process.exit(2);
}
const lockMs = Number(process.env.TRAJLAB_LOCK_MS ?? 60_000);
if (!Number.isInteger(lockMs) || lockMs < 1000) {
  process.stderr.write(`trajlab worker: TRAJLAB_LOCK_MS must be an integer >= 1000; got '${process.env.TRAJLAB_LOCK_MS}'\n`);
  process.exit(2);
}
// compiled (dist/*.js): the sandboxed processor is compiled too, and the sandbox needs no TypeScript loader
const processor = fileURLToPath(new URL(import.meta.url.endsWith('.js') ? './processor.js' : './processor.ts', import.meta.url));
const worker = new Worker(QUEUES.shards, processor, {
  connection: settings.connection,
  concurrency,
  useWorkerThreads: false,
  // A job whose worker died (its lock was not renewed) is taken over by another worker within about two lock periods.
  lockDuration: lockMs,
  stalledInterval: lockMs,
  maxStalledCount: 2,
});
const log = (s: string) => process.stderr.write(`[worker ${process.pid}] ${s}\n`);
worker.on('ready', () => log(`ready: queue ${QUEUES.shards} on ${settings.display}, concurrency ${concurrency}`));
worker.on('active', (job) => log(`start ${job.id}`));
worker.on('completed', (job) => log(`done ${job.id}`));
worker.on('failed', (job, err) => log(`failed ${job?.id}: ${err.message}`));
worker.on('error', (err) => log(`error: ${err.message}`));

drainOnSignal(worker, log);
// the sandboxed processes load their code now, while the queue may still be empty
warmSandbox(worker, processor, concurrency).then(
  (n) => n > 0 && log(`${n} shard process(es) started`),
  (err: unknown) => log(`shard processes start with the first job (${(err as Error).message})`),
);
