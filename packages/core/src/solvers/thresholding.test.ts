import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { dynamicThresholding } from './thresholding.js';

describe('dynamic thresholding', () => {
  it('leaves data inside [-maxValue, maxValue] untouched', () => {
    const rows = [[0.5, -0.9, 0.1, 1]];
    const wrapped = dynamicThresholding((x) => tf.clone(x));
    const x = tf.tensor2d(rows);
    expect(wrapped(x, 1).arraySync()).toEqual(rows.map((r) => r.map(Math.fround)));
  });

  it('clips to the per-sample quantile s of |D| and divides by s (linear interpolation between order statistics)', () => {
    // |D| sorted: 0, 1, 2, ..., 9; ratio 0.5 -> position 4.5 -> s = 4.5
    const row = [9, -8, 7, -6, 5, -4, 3, -2, 1, 0];
    const wrapped = dynamicThresholding((x) => tf.clone(x), { ratio: 0.5, maxValue: 1 });
    const x = tf.tensor2d([row, row.map((v) => v / 10)]);
    const [a, b] = wrapped(x, 1).arraySync();
    a!.forEach((v, k) => expect(v).toBeCloseTo(Math.max(-4.5, Math.min(4.5, row[k]!)) / 4.5, 6));
    // second sample's quantile 0.45 is below maxValue 1: unchanged
    b!.forEach((v, k) => expect(v).toBeCloseTo(row[k]! / 10, 6));
  });
});
