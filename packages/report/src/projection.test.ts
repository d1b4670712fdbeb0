import { describe, expect, it } from 'vitest';
import { projectTrajectory } from './projection.js';

describe('projectTrajectory', () => {
  it('recovers the coordinates of a trajectory lying in a plane: along the chord, and across it up to sign', () => {
    const dim = 40;
    const x0 = Array.from({ length: dim }, (_, k) => Math.sin(k + 1));
    // u along the chord, w orthogonal to it, both unit vectors
    const u = Array.from({ length: dim }, (_, k) => (k % 2 === 0 ? 1 : -1) / Math.sqrt(dim));
    const w = Array.from({ length: dim }, (_, k) => (k < dim / 2 ? 1 : -1) / Math.sqrt(dim));
    const at = (s: number, c: number) => x0.map((v, k) => v + s * u[k]! + c * w[k]!);
    const along = [0, 0.5, 1.4, 2.2, 3];
    const across = [0, 0.3, 0.45, 0.2, 0];
    const xs = along.map((s, i) => at(s, across[i]!));
    const ds = [at(2.9, 0.1), null, at(3, 0.02), at(3, 0), at(3, 0)];
    const { x, d } = projectTrajectory(xs, ds);
    const sign = Math.sign(x[2]![1]);
    x.forEach(([a, b], i) => {
      expect(a).toBeCloseTo(along[i]!, 10);
      expect(b * sign).toBeCloseTo(across[i]!, 10);
    });
    // the denoised points without a value are left out
    expect(d.length).toBe(4);
    expect(d[0]![0]).toBeCloseTo(2.9, 10);
    expect(d[0]![1] * sign).toBeCloseTo(0.1, 10);
  });

  it('gives a zero second coordinate to a straight trajectory', () => {
    const xs = [0, 1, 2].map((s) => [s, 2 * s, -s]);
    const { x } = projectTrajectory(xs, [null, null, null]);
    expect(x.map(([a]) => a)).toEqual([0, Math.sqrt(6), 2 * Math.sqrt(6)].map((v) => expect.closeTo(v, 12)));
    for (const [, b] of x) expect(b).toBeCloseTo(0, 12);
  });
});
