/**
 * trajlab aggregator: processes each study's flow parent once all its shards are done (REDIS_URL), in a sandboxed child.
 * SIGTERM/SIGINT: finish the current aggregation, exit.
 */
import { drainOnSignal, QUEUES, redisSettings, warmSandbox } from '@trajlab/queue';
import { Worker } from 'bullmq';
import { fileURLToPath } from 'node:url';
import { earlyFoldMode } from './early-fold-mode.js';

const settings = redisSettings();
try {
  earlyFoldMode(); // read again by the aggregation process: checked here, where a bad value stops the service
} catch (err) {
  process.stderr.write(`trajlab aggregator: ${(err as Error).message}\n`);
  process.exit(2);
}
// compiled (dist/*.js): the sandboxed processor is compiled too, and the sandbox needs no TypeScript loader
const processor = fileURLToPath(new URL(import.meta.url.endsWith('.js') ? './processor.js' : './processor.ts', import.meta.url));
const worker = new Worker(QUEUES.aggregate, processor, {
  connection: settings.connection,
  concurrency: 1,
  useWorkerThreads: false,
  lockDuration: 120_000,
});
const log = (s: string) => process.stderr.write(`[aggregator ${process.pid}] ${s}\n`);
worker.on('ready', () => log(`ready: queue ${QUEUES.aggregate} on ${settings.display}`));
worker.on('completed', (job, result: { foldedBefore?: number } | undefined) =>
  log(`aggregated ${job.id}${result?.foldedBefore ? ` (${result.foldedBefore} shard file(s) folded while the study ran)` : ''}`),
);
worker.on('failed', (job, err) => log(`failed ${job?.id}: ${err.message}`));
worker.on('error', (err) => log(`error: ${err.message}`));
drainOnSignal(worker, log);
// the sandboxed process loads its code now, not when the first study is ready to aggregate
warmSandbox(worker, processor, 1).then(
  (n) => n > 0 && log('aggregation process started'),
  (err: unknown) => log(`the aggregation process starts with the first job (${(err as Error).message})`),
);
