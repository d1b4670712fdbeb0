import { StudyFold, type FoldKind } from '@trajlab/results';
import { aggregateStudy, studyAggregation } from '@trajlab/runner';
import { openStore } from '@trajlab/storage';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runSpec } from './helpers.js';

/**
 * The aggregator folds a study's shards while the study runs and the rest when its job comes: the result must be the
 * same bits as folding everything at once, whatever was folded before.
 */
describe('aggregation folded in two parts', () => {
  it('gives summary and curves byte-identical to one pass, and ignores a fold of another study', async () => {
    const spec = {
      name: 'fold-parts',
      samples: 20,
      shardSize: 4,
      dataset: { kind: 'gmm', dim: 4, components: 3, n: 80 },
      solvers: [
        { solver: 'euler', steps: 6 },
        { solver: 'heun', steps: 4 },
      ],
      keepStates: 0,
    };
    const run = await runSpec(spec);
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
});
