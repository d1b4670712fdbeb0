import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { AGGREGATION_WARM_UP_SPEC, warmUpAggregation } from './aggregation-warm-up.js';

describe('warmUpAggregation', () => {
  it('folds every shard file of its made-up study each round, aggregates and reports it, and leaves no directory behind', async () => {
    const leftovers = () => readdirSync(tmpdir()).filter((f) => f.startsWith('trajlab-aggregation-warm-up-')).length;
    const before = leftovers();
    // two configs of 128 samples in shards of 32, two files each
    const filesPerRound = AGGREGATION_WARM_UP_SPEC.solvers.length * (AGGREGATION_WARM_UP_SPEC.samples / AGGREGATION_WARM_UP_SPEC.shardSize) * 2;
    expect(filesPerRound).toBe(16);
    const result = await warmUpAggregation(2);
    expect(result.files).toBe(2 * filesPerRound);
    expect(result.seconds).toBeGreaterThan(0);
    expect(leftovers()).toBe(before);
  });
});
