import { describe, expect, it } from 'vitest';
import { initialNoise, initialNoiseBatch, normalStream, philox4x32 } from './rng.js';

const hex = (w: Uint32Array) => Array.from(w, (v) => v.toString(16).padStart(8, '0')).join(' ');

describe('Philox4x32-10', () => {
  it('matches the Random123 known-answer vectors', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]))).toBe(
      '408f276d 41c83b0e a20bc7c6 6d5451fd',
    );
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });
});

describe('seeded noise', () => {
  it('sample i depends only on (seed, i, dim): batching and order do not matter', () => {
    const batch = initialNoiseBatch(7, 10, 5, 3, 80);
    for (let r = 0; r < 5; r++) expect(Array.from(batch.subarray(r * 3, r * 3 + 3))).toEqual(Array.from(initialNoise(7, 10 + r, 3, 80)));
    expect(Array.from(initialNoise(7, 12, 3, 80))).toEqual(Array.from(initialNoise(7, 12, 5, 80).subarray(0, 3)));
    expect(Array.from(initialNoise(7, 12, 3, 80))).not.toEqual(Array.from(initialNoise(8, 12, 3, 80)));
  });

  it('is standard normal', () => {
    const z = normalStream(1, 2, 200_000);
    let m = 0;
    let v = 0;
    let tail = 0;
    for (const x of z) {
      m += x;
      v += x * x;
      if (Math.abs(x) > 1.959964) tail++;
    }
    m /= z.length;
    v = v / z.length - m * m;
    expect(Math.abs(m)).toBeLessThan(0.01);
    expect(Math.abs(v - 1)).toBeLessThan(0.01);
    expect(tail / z.length).toBeCloseTo(0.05, 2);
  });
});
