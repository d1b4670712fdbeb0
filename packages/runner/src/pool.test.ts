import { dispatchOrder, planStudy, resolveStudyText, trajectoryCost } from '@trajlab/study';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runStudyEmbedded } from './embedded.js';
import { runShards, type ShardExecutor, type ShardWork } from './pool.js';

/** The shards of a small real plan: one config, 12 shards of 2 samples. */
function work(): ShardWork[] {
  const text = 'name: pool\nsamples: 24\nshardSize: 2\ndataset: { kind: two-moons, n: 50 }\nsolvers: [{ solver: euler, steps: 3 }]\n';
  const plan = planStudy(resolveStudyText(text, 'pool.yaml', '.').study);
  return plan.configs.flatMap((config) => config.shards.map((shard) => ({ config, shard })));
}

/** An executor that takes `ms` per shard and runs what it holds one after the other, like a shard process (`fails`: each shard fails). */
function executor(name: string, ms: number, log: { who: string; shard: string; heldAtStart: number }[], fails = false) {
  let held = 0;
  let chain = Promise.resolve();
  let maxHeld = 0;
  const exec: ShardExecutor & { maxHeld: () => number } = {
    maxHeld: () => maxHeld,
    run: (w) => {
      held++;
      maxHeld = Math.max(maxHeld, held);
      log.push({ who: name, shard: w.shard.name, heldAtStart: held });
      const done = chain.then(
        () =>
          new Promise<boolean>((resolve, reject) =>
            setTimeout(() => {
              held--;
              if (fails) reject(new Error(`shard ${w.shard.name} failed`));
              else resolve(false);
            }, ms),
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
    const log: { who: string; shard: string; heldAtStart: number }[] = [];
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

  it("a forked process's failure rejects the run with its error", async () => {
    const log: { who: string; shard: string; heldAtStart: number }[] = [];
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
