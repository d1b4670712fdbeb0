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


/** ||a_i - b_j|| of rows of [., dim] arrays (b_j = 0 when `b` is null), summed over the coordinates in order. */
function rowDist(a: Float32Array, i: number, b: Float32Array | null, j: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) s += (a[i * dim + k]! - (b ? b[j * dim + k]! : 0)) ** 2;
  return Math.sqrt(s);
}

/** Distance of row p from the line through rows a and b, from the residual of p - a after projecting out b - a. */
function lineDistance(pts: Float32Array, p: number, a: number, b: number, dim: number): number {
  let vv = 0;
  let wv = 0;
  for (let k = 0; k < dim; k++) {
    const v = pts[b * dim + k]! - pts[a * dim + k]!;
    vv += v * v;
    wv += (pts[p * dim + k]! - pts[a * dim + k]!) * v;
  }
  const c = vv > 0 ? wv / vv : 0;
  let r2 = 0;
  for (let k = 0; k < dim; k++) r2 += (pts[p * dim + k]! - pts[a * dim + k]! - c * (pts[b * dim + k]! - pts[a * dim + k]!)) ** 2;
  return Math.sqrt(r2);
}

/** The contract's per-point metrics one definition at a time (a pass per metric), as the reference of pointMetrics. */
function referencePointMetrics(t: Trajectory): Record<string, number[]> {
  const { dim, points: P, x, denoised: d, hasDenoised: h } = t;
  const last = P - 1;
  const firstD = h.indexOf(1);
  const lastD = h.lastIndexOf(1);
  const col = (f: (i: number) => number) => Array.from({ length: P }, (_, i) => f(i));
  const withD = (f: (i: number) => number) => (i: number) => (h[i] ? f(i) : Number.NaN);
  const vec = (from: Float32Array, i: number, minus: Float32Array, j: number) => Array.from({ length: dim }, (_, k) => from[i * dim + k]! - minus[j * dim + k]!);
  return {
    xNorm: col((i) => rowDist(x, i, null, 0, dim)),
    dNorm: col(withD((i) => rowDist(d, i, null, 0, dim))),
    distXFinal: col((i) => rowDist(x, i, x, last, dim)),
    distDFinal: col(withD((i) => rowDist(d, i, x, last, dim))),
    devX: col((i) => lineDistance(x, i, 0, last, dim)),
    devD: col(withD((i) => (firstD >= 0 && lastD > firstD ? lineDistance(d, i, firstD, lastD, dim) : 0))),
    cosEpsFinal: col(
      withD((i) => {
        if (i === last) return Number.NaN;
        const e = vec(x, i, d, i);
        const f = vec(x, i, x, last);
        let ee = 0;
        let ff = 0;
        let ef = 0;
        for (let k = 0; k < dim; k++) {
          ee += e[k]! * e[k]!;
          ff += f[k]! * f[k]!;
          ef += e[k]! * f[k]!;
        }
        return ee > 0 && ff > 0 ? ef / Math.sqrt(ee * ff) : Number.NaN;
      }),
    ),
    turnAngle: col((i) => {
      if (i === 0 || i === last) return Number.NaN;
      const u = vec(x, i + 1, x, i);
      const v = vec(x, i, x, i - 1);
      const nu = Math.sqrt(u.reduce((a, c) => a + c * c, 0));
      const nv = Math.sqrt(v.reduce((a, c) => a + c * c, 0));
      if (nu === 0 || nv === 0) return Number.NaN;
      let diff = 0;
      let sum = 0;
      for (let k = 0; k < dim; k++) {
        diff += (u[k]! / nu - v[k]! / nv) ** 2;
        sum += (u[k]! / nu + v[k]! / nv) ** 2;
      }
      return 2 * Math.atan2(Math.sqrt(diff), Math.sqrt(sum));
    }),
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

  it('pointMetrics, which shares its passes between metrics, gives the bits of each metric computed on its own', () => {
    // random trajectories of several sizes, with D evaluated at every point, at alternate points, at none, and a
    // trajectory standing still (zero chord and zero steps)
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 8;
    let compared = 0;
    for (let trial = 0; trial < 60; trial++) {
      const dim = 1 + ((trial * 13) % 40);
      const P = 2 + (trial % 7);
      const x = Float32Array.from({ length: P * dim }, rand);
      if (trial % 10 === 0) x.fill(0.5);
      const hasDenoised = Uint8Array.from({ length: P }, (_, i) => (trial % 4 === 0 ? i % 2 : trial % 4 === 1 ? 0 : Number(i < P - 1)));
      const t: Trajectory = { dim, points: P, x, denoised: Float32Array.from({ length: P * dim }, rand), hasDenoised };
      const got = pointMetrics(t);
      for (const [name, want] of Object.entries(referencePointMetrics(t))) {
        expect(Array.from(got[name as keyof typeof got]), `trial ${trial} ${name}`).toEqual(want);
        compared += want.length;
      }
    }
    expect(compared).toBeGreaterThan(1500);
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
