import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { warmUp, WARM_UP_SPEC } from './warm-up.js';

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
