/**
 * 2-D view of one trajectory: coordinates of x_i - x_0 along the chord direction u = (x_S - x_0)/|x_S - x_0| and along
 * v, the top principal direction of the residuals r_i = (x_i - x_0) - ((x_i - x_0) . u) u (power iteration on their
 * scatter, in float64). The denoising trajectory D_i is projected on the same plane. Deterministic.
 */
export function projectTrajectory(xs: number[][], ds: (number[] | null)[]): { x: [number, number][]; d: [number, number][] } {
  const dim = xs[0]!.length;
  const x0 = xs[0]!;
  const last = xs[xs.length - 1]!;
  const u = last.map((v, k) => v - x0[k]!);
  const un = Math.hypot(...u) || 1;
  for (let k = 0; k < dim; k++) u[k] = u[k]! / un;
  const residual = (p: number[]) => {
    const w = p.map((v, k) => v - x0[k]!);
    const a = w.reduce((s, v, k) => s + v * u[k]!, 0);
    return w.map((v, k) => v - a * u[k]!);
  };
  const rs = xs.map(residual);
  // power iteration for the top eigenvector of sum_i r_i r_i^T, started from the largest residual
  let v = rs.reduce((best, r) => (Math.hypot(...r) > Math.hypot(...best) ? r : best), rs[0]!).slice();
  for (let it = 0; it < 50; it++) {
    const next = new Array<number>(dim).fill(0);
    for (const r of rs) {
      const c = r.reduce((s, val, k) => s + val * v[k]!, 0);
      for (let k = 0; k < dim; k++) next[k] = next[k]! + c * r[k]!;
    }
    const n = Math.hypot(...next);
    if (!(n > 0)) break;
    v = next.map((val) => val / n);
  }
  const vn = Math.hypot(...v);
  if (!(vn > 0)) v = new Array<number>(dim).fill(0);
  const coords = (p: number[]): [number, number] => {
    const w = p.map((val, k) => val - x0[k]!);
    return [w.reduce((s, val, k) => s + val * u[k]!, 0), w.reduce((s, val, k) => s + val * v[k]!, 0)];
  };
  return { x: xs.map(coords), d: ds.filter((p): p is number[] => p !== null).map(coords) };
}
