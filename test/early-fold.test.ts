import { StudyFold, type FoldKind } from '@trajlab/results';
import { aggregateStudy, EarlyFolds, runStudyEmbedded, studyAggregation } from '@trajlab/runner';
import { openStore, type ObjectStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runSpec, tempDir, writeSpec } from './helpers.js';

/**
 * The aggregator folds a study's shards while the study runs and the rest when its job comes: the result must be the
 * same bits as folding everything at once, whatever was folded before.
 */
/** A study of two configs (Euler 6, Heun 4) of 5 shards each over a small mixture. */
const twoConfigSpec = (name: string) => ({
  name,
  samples: 20,
  shardSize: 4,
  dataset: { kind: 'gmm', dim: 4, components: 3, n: 80 },
  solvers: [
    { solver: 'euler', steps: 6 },
    { solver: 'heun', steps: 4 },
  ],
  keepStates: 0,
});

/** The store `local` with its reads made by `get` (which may call local.get). */
const withGet = (local: ObjectStore, get: ObjectStore['get']): ObjectStore => ({
  root: local.root,
  put: (k, b) => local.put(k, b),
  exists: (k) => local.exists(k),
  list: (p) => local.list(p),
  locate: (k) => local.locate(k),
  get,
});

describe('aggregation folded in two parts', () => {
  it('gives summary and curves byte-identical to one pass, and ignores a fold of another study', async () => {
    const run = await runSpec(twoConfigSpec('fold-parts'));
    const summary = readFileSync(run.summary);
    const curves = readFileSync(run.curves);
    const store = openStore(join(run.dir, 'out'));
    const { configs } = await studyAggregation(store, run.studyId);
    expect(configs.map((c) => c.samplesKeys.length)).toEqual([5, 5]);

    // config 0: its first 2 samples files and 3 steps files; config 1: 4 steps files and no samples file
    const fold = new StudyFold(configs);
    const feed = async (ci: number, kind: FoldKind, n: number) => {
      for (let i = 0; i < n; i++) fold.add(ci, kind, await store.get(fold.nextKey(ci, kind)!));
    };
    await feed(0, 'samples', 2);
    await feed(0, 'steps', 3);
    await feed(1, 'steps', 4);
    const res = await aggregateStudy(store, run.studyId, fold);
    expect(res.foldedBefore).toBe(9);
    expect(readFileSync(run.summary).equals(summary)).toBe(true);
    expect(readFileSync(run.curves).equals(curves)).toBe(true);

    // a fold made from other configs (another study's plan) is not used: everything is read again
    const other = new StudyFold(configs.slice(0, 1));
    other.add(0, 'samples', await store.get(configs[0]!.samplesKeys[0]!));
    const again = await aggregateStudy(store, run.studyId, other);
    expect(again.foldedBefore).toBe(0);
    expect(readFileSync(run.summary).equals(summary)).toBe(true);
    expect(readFileSync(run.curves).equals(curves)).toBe(true);
  });

  it('a study taken while a shard file is being read still gets that file folded: every shard file is read once', async () => {
    const spec = {
      name: 'fold-taken',
      samples: 8,
      shardSize: 4,
      dataset: { kind: 'gmm', dim: 3, components: 2, n: 40 },
      solvers: [{ solver: 'euler', steps: 5 }],
      keepStates: 0,
    };
    const run = await runSpec(spec);
    const summary = readFileSync(run.summary);
    const curves = readFileSync(run.curves);
    const out = join(run.dir, 'out');
    const doc = JSON.parse(readFileSync(join(out, studyKeys.studyJson(run.studyId)), 'utf8')) as { plan: { configs: { configId: string; shards: string[] }[] } };
    const { configId, shards } = doc.plan.configs[0]!;
    // the store's reads are counted, and the first shard's steps file is held until the study is taken
    const held = studyKeys.shard(run.studyId, configId, shards[0]!, 'steps');
    const reads = new Map<string, number>();
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let heldStarted!: () => void;
    const started = new Promise<void>((r) => (heldStarted = r));
    const local = openStore(out);
    const counted = withGet(local, async (k) => {
      reads.set(k, (reads.get(k) ?? 0) + 1);
      if (k === held) {
        heldStarted();
        await released;
      }
      return local.get(k);
    });
    const early = new EarlyFolds({ openStore: () => counted });
    early.shardDone(run.studyId, configId, shards[0]!, out);
    await started;
    // the aggregate job comes while the steps file is on its way
    const taking = early.take(run.studyId, out);
    release();
    const taken = await taking;
    expect(taken).not.toBeNull();
    expect(taken!.fold.foldedFiles()).toBe(2);
    const res = await aggregateStudy(taken!.store, run.studyId, taken!.fold);
    expect(res.foldedBefore).toBe(2);
    const shardReads = [...reads].filter(([k]) => k.includes('/shards/'));
    expect(shardReads).toHaveLength(4);
    expect(shardReads.every(([, n]) => n === 1), JSON.stringify(shardReads)).toBe(true);
    expect(readFileSync(run.summary).equals(summary)).toBe(true);
    expect(readFileSync(run.curves).equals(curves)).toBe(true);
  });

  it.each([
    [4, 4],
    [1, 1],
  ])('requests the complete files next in line ahead of the fold (readAhead %i: %i in flight at most), reads each once, and folds the same bits', async (readAhead, inFlightMax) => {
    const run = await runSpec(twoConfigSpec(`fold-ahead-${readAhead}`));
    const summary = readFileSync(run.summary);
    const curves = readFileSync(run.curves);
    const out = join(run.dir, 'out');
    const doc = JSON.parse(readFileSync(join(out, studyKeys.studyJson(run.studyId)), 'utf8')) as { plan: { configs: { configId: string; shards: string[] }[] } };
    // shard files are answered only once the gate opens; the requests waiting meanwhile are counted
    const local = openStore(out);
    const reads = new Map<string, number>();
    let waiting = 0;
    let mostWaiting = 0;
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    let reachedMax!: () => void;
    const atMax = new Promise<void>((r) => (reachedMax = r));
    const gated = withGet(local, async (k) => {
      if (!k.includes('/shards/')) return local.get(k);
      reads.set(k, (reads.get(k) ?? 0) + 1);
      waiting++;
      mostWaiting = Math.max(mostWaiting, waiting);
      if (waiting === inFlightMax) reachedMax();
      await opened;
      waiting--;
      return local.get(k);
    });
    for (const bad of [0, 2.5, Number.NaN]) expect(() => new EarlyFolds({ openStore: () => gated, readAhead: bad })).toThrow(/readAhead must be an integer >= 1/);
    const early = new EarlyFolds({ openStore: () => gated, readAhead });
    // every shard of both configs finished, the second config's first
    for (const { configId, shards } of [...doc.plan.configs].reverse()) for (const shard of shards) early.shardDone(run.studyId, configId, shard, out);
    // (a fold that never gets that many requests out fails below instead of waiting for ever)
    await Promise.race([atMax, new Promise((r) => setTimeout(r, 10_000))]);
    await new Promise((r) => setTimeout(r, 50));
    expect(mostWaiting).toBe(inFlightMax);
    open();
    // every file of every shard heard of gets folded before the study is taken
    expect(await early.caughtUp(run.studyId)).toBe(20);
    const taken = await early.take(run.studyId, out);
    expect(taken).not.toBeNull();
    const res = await aggregateStudy(taken!.store, run.studyId, taken!.fold);
    expect(res.foldedBefore).toBe(20);
    expect(reads.size).toBe(20);
    expect([...reads.values()].every((n) => n === 1), JSON.stringify([...reads])).toBe(true);
    expect(readFileSync(run.summary).equals(summary)).toBe(true);
    expect(readFileSync(run.curves).equals(curves)).toBe(true);
  });

  it('trajlab run with shard processes folds finished shards while others run, and writes the bytes of a run in one process', async () => {
    const spec = { ...twoConfigSpec('fold-embedded'), samples: 48 };
    const one = await runSpec(spec);
    expect(one.shardFilesFoldedEarly).toBe(0);
    const dir = tempDir();
    const two = await runStudyEmbedded(writeSpec(dir, spec), { out: join(dir, 'out'), workers: 2 });
    // 2 x 12 shards, two files each: all but the last shards' are folded before the aggregation starts
    expect(two.shardFilesFoldedEarly).toBeGreaterThan(0);
    expect(two.shardFilesFoldedEarly).toBeLessThanOrEqual(48);
    expect(readFileSync(two.summary).equals(readFileSync(one.summary))).toBe(true);
    expect(readFileSync(two.curves).equals(readFileSync(one.curves))).toBe(true);
  });
});
