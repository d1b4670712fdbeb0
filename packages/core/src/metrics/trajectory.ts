import { symmetricEigen } from '../linalg.js';

/**
 * Geometry of one sampling trajectory (Chen et al., "A Geometric Perspective on Diffusion Models"), computed on the
 * host in float64 from the stored float32 points. All norms are plain L2 over the dim components.
 */

/** One trajectory: P = S + 1 visited points x_0..x_S and the denoising outputs D_i where they were evaluated. */
export interface Trajectory {
  dim: number;
  /** Number of visited points P. */
  points: number;
  /** x_i, row-major [P, dim]. */
  x: Float32Array;
  /** D(x_i; t_i), row-major [P, dim]; rows with hasDenoised[i] = 0 are ignored. */
  denoised: Float32Array;
  /** 1 where D(x_i; t_i) was evaluated. */
  hasDenoised: Uint8Array;
}

/** Per-point metrics; NaN stands for null. */
export interface PointMetrics {
  xNorm: Float64Array;
  dNorm: Float64Array;
  distXFinal: Float64Array;
  distDFinal: Float64Array;
  devX: Float64Array;
  devD: Float64Array;
  cosEpsFinal: Float64Array;
  turnAngle: Float64Array;
}

/** Per-trajectory metrics. */
export interface SampleMetrics {
  /** ||x_S - x_0||. */
  chord: number;
  /** sum_i ||x_{i+1} - x_i||. */
  pathLength: number;
  /** max_i dev_x. */
  maxDevX: number;
  /** max_dev_x / chord. */
  maxDevRatio: number;
  /** Cumulative fractions of centered variance along the top 1, 2, 3 principal directions (NaN if not computed). */
  pcaVar: [number, number, number];
}

function distAt(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s = 0;
  for (let k = 0; k < n; k++) {
    const d = a[ao + k]! - b[bo + k]!;
    s += d * d;
  }
  return Math.sqrt(s);
}

/**
 * Per-point metrics of the contract's steps table. Each point takes two passes over its coordinates: the first sums
 * every norm, distance and projection (onto the chord x_S - x_0 and the denoised chord D_last - D_first, computed once
 * per trajectory), the second the residuals of the two line deviations and the turning angle from the norms. Every sum
 * runs over the coordinates in order, as the metrics' definitions read, so the bits do not depend on which sums share
 * a pass.
 */
export function pointMetrics(t: Trajectory): PointMetrics {
  const { dim, points: P, x, denoised, hasDenoised } = t;
  const last = P - 1;
  const lo = last * dim;
  const nan = () => new Float64Array(P).fill(Number.NaN);
  const m: PointMetrics = {
    xNorm: nan(),
    dNorm: nan(),
    distXFinal: nan(),
    distDFinal: nan(),
    devX: nan(),
    devD: nan(),
    cosEpsFinal: nan(),
    turnAngle: nan(),
  };
  const firstD = hasDenoised.indexOf(1);
  const lastD = hasDenoised.lastIndexOf(1);
  const hasLineD = firstD >= 0 && lastD > firstD;
  // the lines of the two deviations: x_0 -> x_S, and D at its first -> last evaluation
  const chordX = new Float64Array(dim);
  const chordD = new Float64Array(dim);
  let chordX2 = 0;
  let chordD2 = 0;
  const fo = Math.max(0, firstD) * dim;
  for (let k = 0; k < dim; k++) {
    chordX[k] = x[lo + k]! - x[k]!;
    chordX2 += chordX[k]! * chordX[k]!;
    if (hasLineD) {
      chordD[k] = denoised[lastD * dim + k]! - denoised[fo + k]!;
      chordD2 += chordD[k]! * chordD[k]!;
    }
  }
  for (let i = 0; i < P; i++) {
    const io = i * dim;
    const withD = hasDenoised[i] === 1;
    const turning = i > 0 && i < last;
    let xx = 0; // ||x_i||^2
    let xf = 0; // ||x_i - x_S||^2
    let xw = 0; // (x_i - x_0) . chordX
    let dd = 0; // ||D_i||^2
    let df = 0; // ||D_i - x_S||^2
    let dw = 0; // (D_i - D_first) . chordD
    let ee = 0; // ||eps_i||^2, eps_i = x_i - D_i (the scaled noise / score direction)
    let ef = 0; // eps_i . (x_i - x_S)
    let uu = 0; // ||x_{i+1} - x_i||^2
    let vv = 0; // ||x_i - x_{i-1}||^2
    for (let k = 0; k < dim; k++) {
      const xk = x[io + k]!;
      const f = xk - x[lo + k]!;
      xx += xk * xk;
      xf += f * f;
      xw += (xk - x[k]!) * chordX[k]!;
      if (withD) {
        const dk = denoised[io + k]!;
        const g = dk - x[lo + k]!;
        const e = xk - dk;
        dd += dk * dk;
        df += g * g;
        if (hasLineD) dw += (dk - denoised[fo + k]!) * chordD[k]!;
        ee += e * e;
        ef += e * f;
      }
      if (turning) {
        const u = x[io + dim + k]! - xk;
        const v = xk - x[io - dim + k]!;
        uu += u * u;
        vv += v * v;
      }
    }
    m.xNorm[i] = Math.sqrt(xx);
    m.distXFinal[i] = Math.sqrt(xf);
    // dev_x: the norm of x_i - x_0 less its projection on the chord, from the explicit residual (not a difference of
    // squares, which loses the tiny deviations)
    const cx = chordX2 > 0 ? xw / chordX2 : 0;
    const cd = chordD2 > 0 ? dw / chordD2 : 0;
    const nu = Math.sqrt(uu);
    const nv = Math.sqrt(vv);
    let rx = 0;
    let rd = 0;
    let diff = 0;
    let sum = 0;
    const angle = turning && nu !== 0 && nv !== 0;
    for (let k = 0; k < dim; k++) {
      const r = x[io + k]! - x[k]! - cx * chordX[k]!;
      rx += r * r;
      if (withD && hasLineD) {
        const q = denoised[io + k]! - denoised[fo + k]! - cd * chordD[k]!;
        rd += q * q;
      }
      if (angle) {
        // Kahan's angle formula 2 atan2(|u/|u| - v/|v||, |u/|u| + v/|v||), accurate near 0 and pi
        const a = (x[io + dim + k]! - x[io + k]!) / nu;
        const b = (x[io + k]! - x[io - dim + k]!) / nv;
        diff += (a - b) ** 2;
        sum += (a + b) ** 2;
      }
    }
    m.devX[i] = Math.sqrt(rx);
    if (withD) {
      m.dNorm[i] = Math.sqrt(dd);
      m.distDFinal[i] = Math.sqrt(df);
      m.devD[i] = hasLineD ? Math.sqrt(rd) : 0;
      if (i < last) m.cosEpsFinal[i] = ee > 0 && xf > 0 ? ef / Math.sqrt(ee * xf) : Number.NaN;
    }
    if (turning) m.turnAngle[i] = angle ? 2 * Math.atan2(Math.sqrt(diff), Math.sqrt(sum)) : Number.NaN;
  }
  return m;
}

/**
 * Cumulative variance fractions of the top-3 principal components of the centered points (rows of a [P, dim] array).
 * Uses the P x P Gram matrix when P <= dim, else the dim x dim scatter matrix: both have the same non-zero spectrum.
 */
export function pcaVarianceFractions(pts: Float32Array, P: number, dim: number): [number, number, number] {
  const mean = new Float64Array(dim);
  for (let i = 0; i < P; i++) for (let k = 0; k < dim; k++) mean[k] = mean[k]! + pts[i * dim + k]! / P;
  const c = new Float64Array(P * dim);
  for (let i = 0; i < P; i++) for (let k = 0; k < dim; k++) c[i * dim + k] = pts[i * dim + k]! - mean[k]!;
  let n: number;
  let g: Float64Array;
  if (P <= dim) {
    n = P;
    g = new Float64Array(P * P);
    for (let i = 0; i < P; i++) {
      for (let j = i; j < P; j++) {
        let s = 0;
        for (let k = 0; k < dim; k++) s += c[i * dim + k]! * c[j * dim + k]!;
        g[i * P + j] = s;
        g[j * P + i] = s;
      }
    }
  } else {
    n = dim;
    g = new Float64Array(dim * dim);
    for (let i = 0; i < P; i++) {
      for (let a = 0; a < dim; a++) {
        const ca = c[i * dim + a]!;
        for (let b = a; b < dim; b++) g[a * dim + b] = g[a * dim + b]! + ca * c[i * dim + b]!;
      }
    }
    for (let a = 0; a < dim; a++) for (let b = 0; b < a; b++) g[a * dim + b] = g[b * dim + a]!;
  }
  let total = 0;
  for (let i = 0; i < n; i++) total += g[i * n + i]!;
  if (!(total > 0)) return [Number.NaN, Number.NaN, Number.NaN];
  const { values } = symmetricEigen(g, n, false);
  const out: [number, number, number] = [0, 0, 0];
  let acc = 0;
  for (let k = 0; k < 3; k++) {
    acc += Math.max(0, values[k] ?? 0);
    out[k] = Math.min(1, acc / total);
  }
  return out;
}

/** Per-trajectory metrics of the contract's samples table. */
export function sampleMetrics(t: Trajectory, points: PointMetrics, withPca = true): SampleMetrics {
  const { dim, points: P, x } = t;
  const chord = distAt(x, 0, x, (P - 1) * dim, dim);
  let pathLength = 0;
  for (let i = 0; i + 1 < P; i++) pathLength += distAt(x, i * dim, x, (i + 1) * dim, dim);
  let maxDevX = 0;
  for (let i = 0; i < P; i++) maxDevX = Math.max(maxDevX, points.devX[i]!);
  return {
    chord,
    pathLength,
    maxDevX,
    maxDevRatio: chord > 0 ? maxDevX / chord : Number.NaN,
    pcaVar: withPca ? pcaVarianceFractions(x, P, dim) : [Number.NaN, Number.NaN, Number.NaN],
  };
}
