import { dispatchOrder, planStudy, resolveStudyText, trajectoryCost } from '@trajlab/study';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runStudyEmbedded } from './embedded.js';
import { batchLimit, runShards, type ShardExecutor, type ShardWork } from './pool.js';

/** The shards of a small real plan: one config, 12 shards of 2 samples. */
function work(): ShardWork[] {
  const text = 'name: pool\nsamples: 24\nshardSize: 2\ndataset: { kind: two-moons, n: 50 }\nsolvers: [{ solver: euler, steps: 3 }]\n';
  const plan = planStudy(resolveStudyText(text, 'pool.yaml', '.').study);
  return plan.configs.flatMap((config) => config.shards.map((shard) => ({ config, shard })));
}

/** A log entry: who was handed which batch (its shards' names) and how many batches it held then, this one included. */
interface Handed {
  who: string;
  shard: string;
  shards: string[];
  configs: string[];
  heldAtStart: number;
}

/**
 * An executor that takes `ms` per shard of a batch and runs what it holds one after the other, like a shard process
 * (`fails`: each batch fails).
 */
function executor(name: string, ms: number, log: Handed[], fails = false) {
  let held = 0;
  let chain = Promise.resolve();
  let maxHeld = 0;
  const exec: ShardExecutor & { maxHeld: () => number } = {
    maxHeld: () => maxHeld,
    run: (batch) => {
      held++;
      maxHeld = Math.max(maxHeld, held);
      const shards = batch.map((w) => w.shard.name);
      log.push({ who: name, shard: shards[0]!, shards, configs: batch.map((w) => w.config.configId), heldAtStart: held });
      const done = chain.then(
        () =>
          new Promise<boolean[]>((resolve, reject) =>
            setTimeout(() => {
              held--;
              if (fails) reject(new Error(`shard ${shards[0]} failed`));
              else resolve(batch.map(() => false));
            }, ms * batch.length),
          ),
      );
      chain = done.then(
        () => {},
        () => {},
      );
      return done;
    },
  };
  return exec;
}

describe('runShards (this process plus forked shard processes)', () => {
  it('runs every shard once; a forked process holds its next shard while it runs one, but only while more wait than there are executors', async () => {
    const log: Handed[] = [];
    const local = executor('local', 8, log);
    const forked = executor('forked', 8, log);
    const items = work();
    const done: string[] = [];
    await runShards(local, { executors: [new Promise((r) => setTimeout(() => r(forked), 5))] }, items, () => {}, (_, shard) => done.push(shard.name));
    expect([...done].sort()).toEqual(items.map((w) => w.shard.name).sort());
    expect(local.maxHeld()).toBe(1);
    expect(forked.maxHeld()).toBe(2);
    // the last shards handed out never wait behind another one (4 = executors + the one in hand + the one queued)
    for (const entry of log.slice(-2)) expect(entry.heldAtStart, entry.shard).toBe(1);
  });

  it('hands out batches of consecutive shards of one config, smaller as the queue empties, the last ones one by one', async () => {
    const log: Handed[] = [];
    const local = executor('local', 2, log);
    const forked = executor('forked', 2, log);
    const text = 'name: pool\nsamples: 40\nshardSize: 2\ndataset: { kind: two-moons, n: 50 }\nsolvers: [{ solver: euler, steps: [3, 5] }]\n';
    const plan = planStudy(resolveStudyText(text, 'pool.yaml', '.').study);
    const items = dispatchOrder(plan.configs).flatMap((config) => config.shards.map((shard) => ({ config, shard })));
    const done: string[] = [];
    await runShards(local, { executors: [Promise.resolve(forked)] }, items, () => {}, (config, shard) => done.push(`${config.configId}/${shard.name}`), 4);
    expect([...done].sort()).toEqual(items.map((w) => `${w.config.configId}/${w.shard.name}`).sort());
    // 40 shards wait for 2 executors: batches of 4 while 16 or more wait, then fewer, the last ones single
    expect(log[0]!.shards).toHaveLength(4);
    expect(log.filter((e) => e.shards.length > 1).length).toBeGreaterThan(4);
    for (const entry of log.slice(-4)) expect(entry.shards).toHaveLength(1);
    // each batch is one config's shards, taken from the head of the queue: handed out in order, they are the queue
    for (const entry of log) expect(new Set(entry.configs).size).toBe(1);
    expect(log.flatMap((e) => e.configs.map((c, i) => `${c}/${e.shards[i]}`))).toEqual(items.map((w) => `${w.config.configId}/${w.shard.name}`));
  });

  it('batchLimit: the whole batch for one executor; with several, at most the waiting shards / (2 x executors), at least 1', () => {
    expect(batchLimit(3, 1, 4)).toBe(4);
    expect(batchLimit(16, 2, 4)).toBe(4);
    expect(batchLimit(12, 2, 4)).toBe(3);
    expect(batchLimit(7, 2, 4)).toBe(1);
    expect(batchLimit(100, 3, 1)).toBe(1);
  });

  it("a forked process's failure rejects the run with its error", async () => {
    const log: Handed[] = [];
    const items = work();
    const local = executor('local', 5, log);
    const forked = executor('forked', 5, log, true);
    await expect(runShards(local, { executors: [Promise.resolve(forked)] }, items, () => {}, () => {})).rejects.toThrow(/^shard \S+ failed$/);
  });

  it('hands out the reference first, then the configs with the most work per trajectory, each in sample order, whatever order the plan has', async () => {
    const text = [
      'name: order',
      'samples: 8',
      'shardSize: 2',
      'dataset: { kind: two-moons, n: 50 }',
      'solvers: [{ solver: euler, steps: [4, 16] }, { solver: heun, steps: 8 }, { solver: euler, steps: 15 }]',
      'reference: { solver: heun, steps: 6 }',
      '',
    ].join('\n');
    const plan = planStudy(resolveStudyText(text, 'order.yaml', '.').study);
    const ordered = dispatchOrder(plan.configs);
    // euler 16: 16 NFE + 17 points; euler 15: 15 + 16; heun 8: 16 NFE (two per step) + 9 points; euler 4: 4 + 5
    expect(ordered.map((c) => c.configId)).toEqual(['ref-heun-polynomial-rho7-s6', 'euler-polynomial-rho7-s16', 'euler-polynomial-rho7-s15', 'heun-polynomial-rho7-s8', 'euler-polynomial-rho7-s4']);
    expect(ordered.slice(1).map(trajectoryCost)).toEqual([33, 31, 25, 9]);
    // the plan's own order is not that: the order comes from dispatchOrder, not from the plan
    expect(plan.configs.map((c) => c.configId)).not.toEqual(ordered.map((c) => c.configId));

    // the embedded run computes them in that order (one process: one shard at a time, as handed out)
    const dir = mkdtempSync(join(tmpdir(), 'trajlab-order-'));
    try {
      writeFileSync(join(dir, 'order.yaml'), text);
      const started: string[] = [];
      await runStudyEmbedded(join(dir, 'order.yaml'), {
        out: join(dir, 'out'),
        onProgress: (p) => {
          const key = `${p.configId}/${p.shard}`;
          if (started.at(-1) !== key) started.push(key);
        },
      });
      expect(started).toEqual(ordered.flatMap((c) => c.shards.map((shard) => `${c.configId}/${shard.name}`)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
