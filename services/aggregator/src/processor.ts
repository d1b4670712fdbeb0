/** The sandboxed aggregate processor: merges a finished study's shards into summary.arrow and curves.arrow, then the report. */
import { aggregatePayloadSchema, parsePayload } from '@trajlab/queue';
import { writeReport } from '@trajlab/report';
import { aggregateStudy } from '@trajlab/runner';
import { openStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';
import type { SandboxedJob } from 'bullmq';

// A sandboxed child must not outlive its worker: if the worker dies (even by SIGKILL) the IPC channel closes; stop
// computing at once instead of finishing a shard nobody will report (the job is taken over once its lock expires).
// BullMQ's child reports an uncaught error by sending it to the parent; with the parent gone that send fails and
// re-triggers the handler forever (a busy loop). Our handlers run first and exit instead.
if (process.send) {
  const exitIfOrphaned = () => {
    if (!process.connected) process.exit(1);
  };
  process.on('disconnect', () => process.exit(1));
  process.prependListener('unhandledRejection', exitIfOrphaned);
  process.prependListener('uncaughtException', exitIfOrphaned);
}

export default async function processAggregate(job: SandboxedJob): Promise<{ summary: string; curves: string; report: string }> {
  const p = parsePayload(aggregatePayloadSchema, job.data, String(job.id));
  const store = openStore(p.out);
  const paths = await aggregateStudy(store, p.studyId);
  const key = studyKeys.studyJson(p.studyId);
  const doc = JSON.parse(new TextDecoder().decode(await store.get(key))) as Record<string, unknown>;
  await store.put(key, new TextEncoder().encode(`${JSON.stringify({ ...doc, status: 'complete', completedAt: new Date().toISOString() }, null, 2)}\n`));
  return { ...paths, report: await writeReport(store, p.studyId) };
}
