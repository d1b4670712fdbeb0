import { QUEUES, studyFlow } from '@trajlab/queue';
import { dispatchOrder, planStudy, resolveStudyText } from '@trajlab/study';
import { FlowProducer, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisHandle } from './services.js';

/**
 * The distributed path hands shards out in dispatchOrder too: the flow's priorities, through a real Redis, make
 * BullMQ deliver the reference's shards first, then each config's, the most work per trajectory first, each config's
 * in sample order.
 */
describe("a submitted study's shard jobs", () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('are delivered the reference first, then the configs with the longest shards first, each in sample order', async () => {
    const text = [
      'name: flow-order',
      'samples: 6',
      'shardSize: 2',
      'dataset: { kind: two-moons, n: 50 }',
      'solvers: [{ solver: euler, steps: [4, 16] }, { solver: heun, steps: 8 }]',
      'reference: { solver: heun, steps: 6 }',
      '',
    ].join('\n');
    const { study } = resolveStudyText(text, 'flow-order.yaml', '.');
    const plan = planStudy(study);
    const connection = { host: '127.0.0.1', port: redis.port };
    const producer = new FlowProducer({ connection });
    const worker = new Worker(QUEUES.shards, null, { connection, autorun: false });
    try {
      await producer.add(studyFlow(plan, { studyId: study.studyId, out: '/tmp/unused', spec: study.spec as Record<string, unknown>, baseDir: '.', sigmas: {}, fresh: true }));
      const delivered: string[] = [];
      for (;;) {
        const job = await worker.getNextJob('test-token', { block: false });
        if (!job) break;
        const { configId, shard } = job.data as { configId: string; shard: { name: string } };
        delivered.push(`${configId}/${shard.name}`);
        await job.moveToCompleted('done', 'test-token', false);
      }
      const expected = dispatchOrder(plan.configs).flatMap((c) => c.shards.map((s) => `${c.configId}/${s.name}`));
      expect(expected.slice(0, 3).every((k) => k.startsWith('ref-'))).toBe(true);
      expect(expected[3]).toBe('euler-polynomial-rho7-s16/000000-000001');
      expect(delivered).toEqual(expected);
    } finally {
      await worker.close();
      await producer.close();
    }
  });
});
