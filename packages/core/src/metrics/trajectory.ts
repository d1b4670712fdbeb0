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

function dotAt(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s = 0;
  for (let k = 0; k < n; k++) s += a[ao + k]! * b[bo + k]!;
  return s;
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
 * Distance of point p from the line through a and b: the norm of the residual of p - a after projecting out the
 * direction b - a (computed from the explicit residual, not as a difference of squares, for accuracy at tiny values).
 */
function lineDeviation(pts: Float32Array, p: number, a: number, b: number, dim: number): number {
  const po = p * dim;
  const ao = a * dim;
  const bo = b * dim;
  let vv = 0;
  let wv = 0;
  for (let k = 0; k < dim; k++) {
    const v = pts[bo + k]! - pts[ao + k]!;
    vv += v * v;
    wv += (pts[po + k]! - pts[ao + k]!) * v;
  }
  const c = vv > 0 ? wv / vv : 0;
  let r2 = 0;
  for (let k = 0; k < dim; k++) {
    const r = pts[po + k]! - pts[ao + k]! - c * (pts[bo + k]! - pts[ao + k]!);
    r2 += r * r;
  }
  return Math.sqrt(r2);
}

/** Angle between two vectors, Kahan's formula 2 atan2(|u/|u| - v/|v||, |u/|u| + v/|v||), accurate near 0 and pi. */
function angleBetween(u: Float64Array, v: Float64Array): number {
  let nu = 0;
  let nv = 0;
  for (let k = 0; k < u.length; k++) {
    nu += u[k]! * u[k]!;
    nv += v[k]! * v[k]!;
  }
  nu = Math.sqrt(nu);
  nv = Math.sqrt(nv);
  if (nu === 0 || nv === 0) return Number.NaN;
  let diff = 0;
  let sum = 0;
  for (let k = 0; k < u.length; k++) {
    const a = u[k]! / nu;
    const b = v[k]! / nv;
    diff += (a - b) ** 2;
    sum += (a + b) ** 2;
  }
  return 2 * Math.atan2(Math.sqrt(diff), Math.sqrt(sum));
}

/** Per-point metrics of the contract's steps table. */
export function pointMetrics(t: Trajectory): PointMetrics {
  const { dim, points: P, x, denoised, hasDenoised } = t;
  const last = P - 1;
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
  const u = new Float64Array(dim);
  const v = new Float64Array(dim);
  for (let i = 0; i < P; i++) {
    const io = i * dim;
    m.xNorm[i] = Math.sqrt(dotAt(x, io, x, io, dim));
    m.distXFinal[i] = distAt(x, io, x, last * dim, dim);
    m.devX[i] = lineDeviation(x, i, 0, last, dim);
    if (hasDenoised[i]) {
      m.dNorm[i] = Math.sqrt(dotAt(denoised, io, denoised, io, dim));
      m.distDFinal[i] = distAt(denoised, io, x, last * dim, dim);
      if (firstD >= 0 && lastD > firstD) m.devD[i] = lineDeviation(denoised, i, firstD, lastD, dim);
      else m.devD[i] = 0;
      // cos(eps_i, x_i - x_S) with eps_i = x_i - D_i (the scaled noise / score direction).
      if (i < last) {
        let ee = 0;
        let ff = 0;
        let ef = 0;
        for (let k = 0; k < dim; k++) {
          const e = x[io + k]! - denoised[io + k]!;
          const f = x[io + k]! - x[last * dim + k]!;
          ee += e * e;
          ff += f * f;
          ef += e * f;
        }
        m.cosEpsFinal[i] = ee > 0 && ff > 0 ? ef / Math.sqrt(ee * ff) : Number.NaN;
      }
    }
    if (i > 0 && i < last) {
      for (let k = 0; k < dim; k++) {
        u[k] = x[io + dim + k]! - x[io + k]!;
        v[k] = x[io + k]! - x[io - dim + k]!;
      }
      m.turnAngle[i] = angleBetween(u, v);
    }
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
