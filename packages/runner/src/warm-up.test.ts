import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { warmUp, warmUpEnabled, WARM_UP_SPEC } from './warm-up.js';

describe('warmUp', () => {
  it('computes one shard of each of its configs and leaves no tensor behind', async () => {
    const before = tf.memory().numTensors;
    const result = await warmUp();
    expect(result.shards).toBe(WARM_UP_SPEC.solvers.length);
    expect(result.seconds).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
    // a second warm-up in the same process leaves none either
    await warmUp();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('warmUpEnabled', () => {
  it('is on unless TRAJLAB_WARM_UP says off (any case, spaces around)', () => {
    expect(warmUpEnabled({})).toBe(true);
    expect(warmUpEnabled({ TRAJLAB_WARM_UP: 'on' })).toBe(true);
    expect(warmUpEnabled({ TRAJLAB_WARM_UP: '' })).toBe(true);
    expect(warmUpEnabled({ TRAJLAB_WARM_UP: 'off' })).toBe(false);
    expect(warmUpEnabled({ TRAJLAB_WARM_UP: ' OFF ' })).toBe(false);
  });
});
