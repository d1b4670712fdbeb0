import { dispatchOrder, planStudy, resolveStudyText, trajectoryCost } from '@trajlab/study';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runStudyEmbedded } from './embedded.js';
import { BatchGivenBack, batchLimit, runShards, type ForkedExecutor, type ShardWork } from './pool.js';

/** The shards of a small real plan: one config, 12 shards of 2 samples. */
function work(): ShardWork[] {
  const text = 'name: pool\nsamples: 24\nshardSize: 2\ndataset: { kind: two-moons, n: 50 }\nsolvers: [{ solver: euler, steps: 3 }]\n';
  const plan = planStudy(resolveStudyText(text, 'pool.yaml', '.').study);
  return plan.configs.flatMap((config) => config.shards.map((shard) => ({ config, shard })));
}

/**
 * A log entry: who was handed which batch (its shards' names), and how many batches and shards it held then, this one
 * included.
 */
interface Handed {
  who: string;
  shard: string;
  shards: string[];
  configs: string[];
  heldAtStart: number;
  shardsHeldAtStart: number;
}

/**
 * An executor that takes `ms` per shard of a batch and runs what it holds one after the other, like a shard process
 * (`fails`: each batch fails). It records the share of cores it is given.
 */
function executor(name: string, ms: number, log: Handed[], fails = false) {
  return forkedExecutor(name, ms, log, { fails });
}

/**
 * A fake shard process: `executor`'s behaviour, ready after `readyAfterMs` (a batch handed to it before waits until
 * then), giving back a batch it has not begun.
 */
function forkedExecutor(name: string, ms: number, log: Handed[], opts: { fails?: boolean; readyAfterMs?: number; startFails?: boolean } = {}) {
  let held = 0;
  let heldShards = 0;
  let maxHeld = 0;
  // Infinity: never ready; startFails: its start-up fails after readyAfterMs, and so does every batch it was handed
  const ready =
    opts.readyAfterMs === Infinity
      ? new Promise<void>(() => {})
      : new Promise<void>((resolve, reject) => setTimeout(() => (opts.startFails ? reject(new Error(`${name} could not start`)) : resolve()), opts.readyAfterMs ?? 0));
  ready.catch(() => {});
  let chain: Promise<unknown> = ready;
  const notBegun = new Map<string, () => void>();
  const shares: number[] = [];
  const exec: ForkedExecutor & { maxHeld: () => number; shares: number[]; gaveBack: string[] } = {
    maxHeld: () => maxHeld,
    shares,
    gaveBack: [],
    ready,
    shareCores: (n) => shares.push(n),
    giveBack: (batch) => notBegun.get(batch[0]!.shard.name)?.(),
    run: (batch) => {
      held++;
      heldShards += batch.length;
      maxHeld = Math.max(maxHeld, held);
      const shards = batch.map((w) => w.shard.name);
      log.push({ who: name, shard: shards[0]!, shards, configs: batch.map((w) => w.config.configId), heldAtStart: held, shardsHeldAtStart: heldShards });
      const done = new Promise<boolean[]>((resolve, reject) => {
        let givenBack = false;
        notBegun.set(shards[0]!, () => {
          givenBack = true;
          exec.gaveBack.push(shards[0]!);
          held--;
          heldShards -= batch.length;
          reject(new BatchGivenBack('given back'));
        });
        ready.catch(reject);
        chain = chain.then(() => {
          notBegun.delete(shards[0]!);
          if (givenBack) return;
          return new Promise<void>((finished) =>
            setTimeout(() => {
              held--;
              heldShards -= batch.length;
              if (opts.fails) reject(new Error(`shard ${shards[0]} failed`));
              else resolve(batch.map(() => false));
              finished();
            }, ms * batch.length),
          );
        });
        // a start-up failure reaches the batches through `ready` (above), not through the chain
        chain.catch(() => {});
      });
      return done;
    },
  };
  return exec;
}

describe('runShards (this process plus forked shard processes)', () => {
  it('runs every shard once; a forked process holds its next shard while it runs one, but only while more wait than there are executors', async () => {
    const log: Handed[] = [];
    const local = executor('local', 8, log);
    const forked = forkedExecutor('forked', 8, log, { readyAfterMs: 5 });
    const items = work();
    const done: string[] = [];
    await runShards(local, { executors: [forked] }, items, () => {}, (_, shard) => done.push(shard.name));
    expect([...done].sort()).toEqual(items.map((w) => w.shard.name).sort());
    expect(local.maxHeld()).toBe(1);
    expect(forked.maxHeld()).toBe(2);
    // the last shards handed out never wait behind another one (4 = executors + the one in hand + the one queued)
    for (const entry of log.slice(-2)) expect(entry.heldAtStart, entry.shard).toBe(1);
  });

  it('hands out batches of consecutive shards of one config, smaller as the queue empties, the last one single', async () => {
    const log: Handed[] = [];
    const local = executor('local', 2, log);
    const forked = executor('forked', 2, log);
    const text = 'name: pool\nsamples: 40\nshardSize: 2\ndataset: { kind: two-moons, n: 50 }\nsolvers: [{ solver: euler, steps: [3, 5] }]\n';
    const plan = planStudy(resolveStudyText(text, 'pool.yaml', '.').study);
    const items = dispatchOrder(plan.configs).flatMap((config) => config.shards.map((shard) => ({ config, shard })));
    const done: string[] = [];
    await runShards(local, { executors: [forked] }, items, () => {}, (config, shard) => done.push(`${config.configId}/${shard.name}`), 4);
    expect([...done].sort()).toEqual(items.map((w) => `${w.config.configId}/${w.shard.name}`).sort());
    // 40 shards wait for 2 executors: a batch handed to an executor that holds nothing takes ceil(waiting / 2) shards,
    // at most 4, and fewer only where its config's shards end; one handed to a process still running a batch takes
    // no more than brings it to its share of those waiting and those it holds, ceil((waiting + held) / 2)
    let position = 0;
    for (const entry of log) {
      const waiting = items.length - position;
      const heldBefore = entry.shardsHeldAtStart - entry.shards.length;
      const end = position + entry.shards.length;
      const cutAtConfigEnd = end === items.length || items[end]!.config !== items[position]!.config;
      expect(entry.shards.length, entry.shard).toBeLessThanOrEqual(4);
      if (heldBefore === 0) {
        const limit = Math.min(4, Math.ceil(waiting / 2));
        if (entry.shards.length < limit) expect(cutAtConfigEnd, `${entry.shard}: cut short`).toBe(true);
        else expect(entry.shards, entry.shard).toHaveLength(limit);
      } else {
        expect(entry.shardsHeldAtStart, `${entry.shard}: beyond its share`).toBeLessThanOrEqual(Math.ceil((waiting + heldBefore) / 2));
      }
      position = end;
    }
    // some batches were handed to a process still running one
    expect(log.some((e) => e.shardsHeldAtStart > e.shards.length)).toBe(true);
    expect(log[0]!.shards).toHaveLength(4);
    expect(log.at(-1)!.shards).toHaveLength(1);
    // each batch is one config's shards, taken from the head of the queue: handed out in order, they are the queue
    for (const entry of log) expect(new Set(entry.configs).size).toBe(1);
    expect(log.flatMap((e) => e.configs.map((c, i) => `${c}/${e.shards[i]}`))).toEqual(items.map((w) => `${w.config.configId}/${w.shard.name}`));
  });

  it('hands a process still starting a batch at once, which it begins once ready', async () => {
    const log: Handed[] = [];
    const local = executor('local', 4, log);
    const forked = forkedExecutor('forked', 4, log, { readyAfterMs: 30 });
    const items = work();
    let readyAt = -1;
    void forked.ready.then(() => (readyAt = log.length));
    const done: string[] = [];
    await runShards(local, { executors: [forked] }, items, () => {}, (_, shard) => done.push(shard.name));
    expect([...done].sort()).toEqual(items.map((w) => w.shard.name).sort());
    // 12 shards for 2 executors: after this process's first, 11 wait (at least PREDISPATCH_WAITING per executor)
    expect(log.slice(0, 2).map((e) => e.who)).toEqual(['local', 'forked']);
    expect(readyAt).toBeGreaterThanOrEqual(2);
    expect(forked.gaveBack).toEqual([]);
  });

  it('asks back the batch of a process that is not ready when this process runs out of work, and computes it itself', async () => {
    const log: Handed[] = [];
    const local = executor('local', 2, log);
    const forked = forkedExecutor('forked', 2, log, { readyAfterMs: Infinity });
    const items = work();
    const done: string[] = [];
    await runShards(local, { executors: [forked] }, items, () => {}, (_, shard) => done.push(shard.name));
    // every shard once: the given-back batch was computed here, not twice
    expect([...done].sort()).toEqual(items.map((w) => w.shard.name).sort());
    expect(forked.gaveBack).toEqual([log[1]!.shard]);
    expect(log.filter((e) => e.who === 'local' && e.shard === log[1]!.shard)).toHaveLength(1);
    // a process that never joined neither computed nor lent its core
    expect(local.shares).toEqual([]);
  });

  it('a process that fails to start while holding a batch rejects the run with its start-up error', async () => {
    const log: Handed[] = [];
    const local = executor('local', 5, log);
    const forked = forkedExecutor('forked', 5, log, { readyAfterMs: 20, startFails: true });
    await expect(runShards(local, { executors: [forked] }, work(), () => {}, () => {})).rejects.toThrow('forked could not start');
    expect(log[1]!.who).toBe('forked');
  });

  it('too few shards for a process still starting: this process keeps them', async () => {
    const log: Handed[] = [];
    const local = executor('local', 2, log);
    const forked = forkedExecutor('forked', 2, log, { readyAfterMs: Infinity });
    const items = work().slice(0, 8); // after this process's first, 7 wait: fewer than 4 per executor
    await runShards(local, { executors: [forked] }, items, () => {}, () => {});
    expect(log.every((e) => e.who === 'local')).toBe(true);
  });

  it('gives the core of an executor with nothing left to do to the one still computing, and takes it back when the phase ends', async () => {
    const log: Handed[] = [];
    const local = executor('local', 1, log);
    const forked = forkedExecutor('forked', 40, log);
    const text = 'name: pool\nsamples: 24\nshardSize: 2\ndataset: { kind: two-moons, n: 50 }\nsolvers: [{ solver: euler, steps: 3 }]\nreference: { solver: heun, steps: 4 }\n';
    const plan = planStudy(resolveStudyText(text, 'pool.yaml', '.').study);
    const items = dispatchOrder(plan.configs).flatMap((config) => config.shards.map((shard) => ({ config, shard })));
    await runShards(local, { executors: [forked] }, items, () => {}, () => {}, 1, 2);
    // two phases (the reference, then the rest): each ends with the slow process computing alone on both cores
    expect(forked.shares).toEqual([2, 1, 2, 1]);
    expect(local.shares).toEqual([]);
    // on one core there is nothing to lend
    const alone = forkedExecutor('alone', 40, log);
    await runShards(executor('local', 1, log), { executors: [alone] }, items, () => {}, () => {}, 1, 1);
    expect(alone.shares).toEqual([]);
  });

  it('batchLimit: the whole batch for one executor; with several, at most the waiting shards / executors rounded up, at least 1; less by what the executor holds', () => {
    expect(batchLimit(3, 1, 4)).toBe(4);
    expect(batchLimit(16, 2, 4)).toBe(4);
    expect(batchLimit(7, 2, 4)).toBe(4);
    expect(batchLimit(5, 2, 4)).toBe(3);
    expect(batchLimit(3, 2, 4)).toBe(2);
    expect(batchLimit(2, 2, 4)).toBe(1);
    expect(batchLimit(7, 3, 4)).toBe(3);
    expect(batchLimit(100, 3, 1)).toBe(1);
    // a process running a batch of 4 while 4 wait (the trace of a 512-trajectory study: it was handed 2 more, and the
    // command, left with 2, idled ~0.5 s while it finished them): its share is ceil(8 / 2) = 4, which it holds
    expect(batchLimit(4, 2, 4, 4)).toBe(0);
    expect(batchLimit(8, 2, 4, 4)).toBe(2);
    expect(batchLimit(3, 2, 4, 2)).toBe(1);
    expect(batchLimit(20, 2, 4, 4)).toBe(4);
    expect(batchLimit(6, 3, 4, 1)).toBe(2);
  });

  it("a forked process's failure rejects the run with its error", async () => {
    const log: Handed[] = [];
    const items = work();
    const local = executor('local', 5, log);
    const forked = executor('forked', 5, log, true);
    await expect(runShards(local, { executors: [forked] }, items, () => {}, () => {})).rejects.toThrow(/^shard \S+ failed$/);
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
