import type { FlowJob } from 'bullmq';
import { dispatchOrder, type StudyPlan } from '@trajlab/study';
import { jobIds, QUEUES } from './names.js';
import { aggregatePayloadSchema, shardPayloadSchema, type AggregatePayload, type ShardPayload } from './payloads.js';

/** Retry policy of shard jobs: transient failures (a worker dying, S3 hiccups) are retried with backoff. */
export const SHARD_ATTEMPTS = 3;

/**
 * The BullMQ flow of a study: an `aggregate` parent with one child per (config, shard). Job ids are derived from
 * (studyId, configId, shard), so submitting the same study again adds nothing. Every child has failParentOnFailure:
 * a shard that fails for good fails the study at once instead of leaving the parent waiting forever.
 */
export function studyFlow(plan: StudyPlan, common: Omit<ShardPayload, 'configId' | 'shard' | 'trace'> & { trace?: boolean }): FlowJob {
  const aggregate: AggregatePayload = aggregatePayloadSchema.parse({ studyId: plan.studyId, out: common.out, trace: common.trace ?? false });
  // BullMQ takes the lowest priority number first, and jobs of one priority in the order they were added: the
  // reference's shards, then each config's in dispatchOrder (the longest shards first), each config's in sample order
  const priority = new Map(dispatchOrder(plan.configs).map((c, i) => [c, 1 + i]));
  return {
    name: 'aggregate',
    queueName: QUEUES.aggregate,
    data: aggregate,
    opts: { jobId: jobIds.aggregate(plan.studyId) },
    children: plan.configs.flatMap((c) =>
      c.shards.map((s) => ({
        name: 'shard',
        queueName: QUEUES.shards,
        data: shardPayloadSchema.parse({ ...common, configId: c.configId, shard: { index: s.index, first: s.first, count: s.count, name: s.name } }),
        opts: {
          jobId: jobIds.shard(plan.studyId, c.configId, s.name),
          failParentOnFailure: true,
          attempts: SHARD_ATTEMPTS,
          backoff: { type: 'exponential', delay: 2000 },
          priority: priority.get(c)!,
        },
      })),
    ),
  };
}

