import { planStudy, resolveStudyText } from '@trajlab/study';
import { describe, expect, it } from 'vitest';
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
});
