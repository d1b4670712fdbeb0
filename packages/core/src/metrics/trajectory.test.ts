import { describe, expect, it } from 'vitest';
import { pcaVarianceFractions, pointMetrics, sampleMetrics, type Trajectory } from './trajectory.js';

function traj(points: number[][], denoised: (number[] | null)[]): Trajectory {
  const dim = points[0]!.length;
  return {
    dim,
    points: points.length,
    x: Float32Array.from(points.flat()),
    denoised: Float32Array.from(denoised.flatMap((d) => d ?? new Array(dim).fill(0))),
    hasDenoised: Uint8Array.from(denoised.map((d) => (d ? 1 : 0))),
  };
}

describe('trajectory metrics', () => {
  it('a straight trajectory has zero deviation, one principal direction and zero turning', () => {
    const t = traj(
      [[4, 0, 0], [3, 0, 0], [1, 0, 0], [0, 0, 0]],
      [[0, 0, 0], [0, 0, 0], [0, 0, 0], null],
    );
    const m = pointMetrics(t);
    const s = sampleMetrics(t, m);
    expect(Array.from(m.devX)).toEqual([0, 0, 0, 0]);
    expect(s.chord).toBe(4);
    expect(s.pathLength).toBe(4);
    expect(s.maxDevRatio).toBe(0);
    expect(s.pcaVar[0]).toBeCloseTo(1, 12);
    expect(m.turnAngle[1]).toBe(0);
    expect(Number.isNaN(m.turnAngle[0]!)).toBe(true);
    expect(Number.isNaN(m.turnAngle[3]!)).toBe(true);
    expect(Number.isNaN(m.dNorm[3]!)).toBe(true);
    expect(m.cosEpsFinal[0]).toBeCloseTo(1, 12);
    expect(Array.from(m.distXFinal)).toEqual([4, 3, 1, 0]);
  });

  it('measures deviation, turning angle and distances of a bent trajectory', () => {
    // x_0 = (2, 0), x_1 = (1, 1), x_2 = (0, 0): the middle point sits 1 from the chord, the path turns by 90 degrees.
    const t = traj([[2, 0], [1, 1], [0, 0]], [[0, 0], [0, 1], [0, 0]]);
    const m = pointMetrics(t);
    const s = sampleMetrics(t, m);
    expect(m.devX[1]).toBeCloseTo(1, 12);
    expect(m.turnAngle[1]).toBeCloseTo(Math.PI / 2, 12);
    expect(s.maxDevRatio).toBeCloseTo(0.5, 12);
    expect(s.pathLength).toBeCloseTo(2 * Math.SQRT2, 12);
    expect(m.distDFinal[1]).toBeCloseTo(1, 12);
    expect(m.dNorm[1]).toBeCloseTo(1, 12);
    // D line through D_0 = (0,0) and last D = (0,0) is degenerate: deviation is the distance from D_0.
    expect(m.devD[1]).toBeCloseTo(1, 12);
    // eps_1 = x_1 - D_1 = (1, 0), x_1 - x_S = (1, 1): cos = 1/sqrt(2).
    expect(m.cosEpsFinal[1]).toBeCloseTo(Math.SQRT1_2, 12);
  });

  it('PCA fractions match a planar point cloud through both code paths (Gram and scatter)', () => {
    // Points on an ellipse in the x-y plane of R^3, embedded twice: P <= dim and P > dim.
    const pts = (P: number) => Float32Array.from(Array.from({ length: P }, (_, i) => [3 * Math.cos((2 * Math.PI * i) / P), Math.sin((2 * Math.PI * i) / P), 0]).flat());
    const [a1, a2, a3] = pcaVarianceFractions(pts(40), 40, 3);
    expect(a1).toBeCloseTo(0.9, 5);
    expect(a2).toBeCloseTo(1, 5);
    expect(a3).toBeCloseTo(1, 5);
    const few = pcaVarianceFractions(pts(3), 3, 3);
    expect(few[1]).toBeCloseTo(1, 5);
  });
});
