/** The sandboxed aggregate processor: merges a finished study's shards into summary.arrow and curves.arrow, then the report. */
import { aggregatePayloadSchema, exitWithParent, parsePayload } from '@trajlab/queue';
import { writeReport } from '@trajlab/report';
import { aggregateStudy, aggregationStore } from '@trajlab/runner';
import { preloadS3Sdk, sharedStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';
import type { SandboxedJob } from 'bullmq';

// A sandboxed child must not outlive its worker (see exitWithParent).
exitWithParent();
// it starts before any job (see warmSandbox): the AWS SDK loads while it waits
preloadS3Sdk();

export default async function processAggregate(job: SandboxedJob): Promise<{ summary: string; curves: string; report: string }> {
  const p = parsePayload(aggregatePayloadSchema, job.data, String(job.id));
  const raw = sharedStore(p.out);
  // the report reads the shards' samples again: from memory
  const store = aggregationStore(raw);
  const paths = await aggregateStudy(store, p.studyId);
  const key = studyKeys.studyJson(p.studyId);
  // study.json as it is now, not as the aggregation read it
  const doc = JSON.parse(new TextDecoder().decode(await raw.get(key))) as Record<string, unknown>;
  await store.put(key, new TextEncoder().encode(`${JSON.stringify({ ...doc, status: 'complete', completedAt: new Date().toISOString() }, null, 2)}\n`));
  return { ...paths, report: await writeReport(store, p.studyId) };
}
