/**
 * 2-D view of one trajectory: coordinates of x_i - x_0 along the chord direction u = (x_S - x_0)/|x_S - x_0| and along
 * v, the top principal direction of the residuals r_i = (x_i - x_0) - ((x_i - x_0) . u) u (power iteration on their
 * scatter, in float64). The denoising trajectory D_i is projected on the same plane. Deterministic. A straight
 * trajectory (residuals at rounding level against the chord) has second coordinates 0.
 */
export function projectTrajectory(xs: number[][], ds: (number[] | null)[]): { x: [number, number][]; d: [number, number][] } {
  // plain loops over the coordinates, in the order (and so with the bits) of the element-wise definitions
  const dim = xs[0]!.length;
  const x0 = xs[0]!;
  const last = xs[xs.length - 1]!;
  // plain arrays, not typed ones: Math.hypot(...a) spreads a plain array without the iterator protocol
  const u = new Array<number>(dim);
  for (let k = 0; k < dim; k++) u[k] = last[k]! - x0[k]!;
  const un = Math.hypot(...u) || 1;
  for (let k = 0; k < dim; k++) u[k] = u[k]! / un;
  /** sum_k (p_k - x0_k) w_k, summed in order of k. */
  const along = (p: number[], w: number[]) => {
    let s = 0;
    for (let k = 0; k < dim; k++) s += (p[k]! - x0[k]!) * w[k]!;
    return s;
  };
  const rs = xs.map((p) => {
    const a = along(p, u);
    const r = new Array<number>(dim);
    for (let k = 0; k < dim; k++) r[k] = p[k]! - x0[k]! - a * u[k]!;
    return r;
  });
  // power iteration for the top eigenvector of sum_i r_i r_i^T, started from the largest residual (the first of equals)
  const norms = rs.map((r) => Math.hypot(...r));
  let start = 0;
  for (let i = 1; i < rs.length; i++) if (norms[i]! > norms[start]!) start = i;
  let v = rs[start]!.slice();
  const next = new Array<number>(dim);
  for (let it = 0; it < 50; it++) {
    next.fill(0);
    for (const r of rs) {
      let c = 0;
      for (let k = 0; k < dim; k++) c += r[k]! * v[k]!;
      for (let k = 0; k < dim; k++) next[k] = next[k]! + c * r[k]!;
    }
    const n = Math.hypot(...next);
    if (!(n > 0)) break;
    v = next.map((val) => val / n);
  }
  const vn = Math.hypot(...v);
  // a straight trajectory (residuals at rounding level) has no second direction: its noise would point anywhere,
  // along u too
  if (!(vn > 0) || !(norms[start]! > 1e-12 * un)) v = new Array<number>(dim).fill(0);
  const coords = (p: number[]): [number, number] => [along(p, u), along(p, v)];
  return { x: xs.map(coords), d: ds.filter((p): p is number[] => p !== null).map(coords) };
}
