import { normalStream, orthonormalizeColumns, uniformStream } from '@trajlab/core';
import { datasetContentHash } from './hash.js';
import type { AnalyticGaussian, AnalyticGmm, Dataset } from './types.js';

/** Stream ids for dataset randomness live far above sample ids, so dataset and sampling noise never share a stream. */
const STREAM = { means: 0xd0000001, basis: 0xd0000002, points: 0xd0000003, assign: 0xd0000004, extra: 0xd0000005 };

/** Parameters of the synthetic Gaussian dataset. */
export interface GaussianDataParams {
  dim: number;
  /** Training points drawn. @defaultValue 1000 */
  n?: number;
  /** Rank of the covariance (rank < dim gives data on a linear subspace). @defaultValue dim */
  rank?: number;
  /** Variance of the top direction. @defaultValue 1 */
  scale?: number;
  /** Eigenvalue k (0-based) is scale * (k + 1)^(-decay); 0 makes the covariance isotropic on its range. @defaultValue 1 */
  decay?: number;
  /** Standard deviation of the random mean's entries (0: zero mean). @defaultValue 0 */
  meanScale?: number;
  /** Generator seed. @defaultValue 0 */
  seed?: number;
}

/** Parameters of the synthetic Gaussian-mixture dataset. */
export interface GmmDataParams {
  dim: number;
  /** Number of mixture components. @defaultValue 8 */
  components?: number;
  /** Training points drawn. @defaultValue 1000 */
  n?: number;
  /** Component means are drawn from N(0, spread^2 I). @defaultValue 3 */
  spread?: number;
  /** Component standard deviation (isotropic), or the base of the diagonal ones. @defaultValue 0.3 */
  std?: number;
  /** `diagonal`: per-dimension stds drawn log-uniformly in [std/2, 2 std]. @defaultValue 'isotropic' */
  covariance?: 'isotropic' | 'diagonal';
  /** `random`: weights drawn from a flat Dirichlet. @defaultValue 'uniform' */
  weights?: 'uniform' | 'random';
  /** Generator seed. @defaultValue 0 */
  seed?: number;
}

/** Parameters of the 2-D toy datasets. */
export interface ToyParams {
  /** Training points drawn. @defaultValue 1000 */
  n?: number;
  /** Standard deviation of the Gaussian noise added to each point. @defaultValue 0.05 */
  noise?: number;
  /** Generator seed. @defaultValue 0 */
  seed?: number;
}

function finish(kind: string, dim: number, n: number, pts: Float64Array, source: string, analytic?: Dataset['analytic']): Dataset {
  const points = Float32Array.from(pts);
  return { kind, dim, n, points, contentHash: datasetContentHash(points, n, dim), analytic, source };
}

/** Gaussian data N(mu, U diag(l) U^T) with a seeded random orthonormal basis and a power-law spectrum. */
export function gaussianDataset(p: GaussianDataParams): Dataset {
  const { dim } = p;
  const n = p.n ?? 1000;
  const rank = p.rank ?? dim;
  const scale = p.scale ?? 1;
  const decay = p.decay ?? 1;
  const seed = p.seed ?? 0;
  const meanScale = p.meanScale ?? 0;
  const basis = normalStream(seed, STREAM.basis, dim * rank);
  orthonormalizeColumns(basis, dim, rank);
  const eigenvalues = Float64Array.from({ length: rank }, (_, k) => scale * (k + 1) ** -decay);
  const mean = normalStream(seed, STREAM.means, dim).map((v) => v * meanScale);
  const z = normalStream(seed, STREAM.points, n * rank);
  const pts = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < dim; a++) {
      let s = mean[a]!;
      for (let k = 0; k < rank; k++) s += basis[a * rank + k]! * Math.sqrt(eigenvalues[k]!) * z[i * rank + k]!;
      pts[i * dim + a] = s;
    }
  }
  const analytic: AnalyticGaussian = { kind: 'gaussian', mean, basis, rank, eigenvalues };
  return finish('gaussian', dim, n, pts, `gaussian(dim=${dim}, rank=${rank}, decay=${decay}, scale=${scale}, seed=${seed})`, analytic);
}

/** A Gaussian mixture with seeded means, weights and (isotropic or diagonal) covariances. */
export function gmmDataset(p: GmmDataParams): Dataset {
  const { dim } = p;
  const K = p.components ?? 8;
  const n = p.n ?? 1000;
  const spread = p.spread ?? 3;
  const std = p.std ?? 0.3;
  const seed = p.seed ?? 0;
  const means = normalStream(seed, STREAM.means, K * dim).map((v) => v * spread);
  const variances = new Float64Array(K * dim).fill(std * std);
  if ((p.covariance ?? 'isotropic') === 'diagonal') {
    const u = uniformStream(seed, STREAM.extra, K * dim);
    for (let j = 0; j < K * dim; j++) variances[j] = (std * 2 ** (2 * u[j]! - 1)) ** 2;
  }
  let weights = new Float64Array(K).fill(1 / K);
  if ((p.weights ?? 'uniform') === 'random') {
    const e = uniformStream(seed, STREAM.extra + 1, K).map((u) => -Math.log(u));
    const total = e.reduce((a, b) => a + b, 0);
    weights = e.map((v) => v / total);
  }
  const cumulative = new Float64Array(K);
  weights.reduce((acc, w, k) => (cumulative[k] = acc + w), 0);
  const u = uniformStream(seed, STREAM.assign, n);
  const z = normalStream(seed, STREAM.points, n * dim);
  const pts = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    let k = 0;
    while (k < K - 1 && u[i]! > cumulative[k]!) k++;
    for (let a = 0; a < dim; a++) pts[i * dim + a] = means[k * dim + a]! + Math.sqrt(variances[k * dim + a]!) * z[i * dim + a]!;
  }
  const analytic: AnalyticGmm = { kind: 'gmm', weights, means, variances };
  return finish('gmm', dim, n, pts, `gmm(dim=${dim}, components=${K}, spread=${spread}, std=${std}, seed=${seed})`, analytic);
}

/** Two interleaved half circles (scaled to about [-1, 1]^2). */
export function twoMoonsDataset(p: ToyParams): Dataset {
  const n = p.n ?? 1000;
  const noise = p.noise ?? 0.05;
  const seed = p.seed ?? 0;
  const u = uniformStream(seed, STREAM.assign, n);
  const z = normalStream(seed, STREAM.points, 2 * n);
  const pts = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const upper = i % 2 === 0;
    const a = Math.PI * u[i]!;
    const x = upper ? Math.cos(a) : 1 - Math.cos(a);
    const y = upper ? Math.sin(a) : 0.5 - Math.sin(a);
    pts[2 * i] = (x - 0.5) / 1.5 + noise * z[2 * i]!;
    pts[2 * i + 1] = (y - 0.25) / 1.5 + noise * z[2 * i + 1]!;
  }
  return finish('two-moons', 2, n, pts, `two-moons(noise=${noise}, seed=${seed})`);
}

/** A 2-D spiral (the planar Swiss roll), radius growing with the angle, scaled to about [-1, 1]^2. */
export function swissRollDataset(p: ToyParams): Dataset {
  const n = p.n ?? 1000;
  const noise = p.noise ?? 0.05;
  const seed = p.seed ?? 0;
  const u = uniformStream(seed, STREAM.assign, n);
  const z = normalStream(seed, STREAM.points, 2 * n);
  const pts = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const a = 1.5 * Math.PI * (1 + 2 * u[i]!);
    pts[2 * i] = (a * Math.cos(a)) / 15 + noise * z[2 * i]!;
    pts[2 * i + 1] = (a * Math.sin(a)) / 15 + noise * z[2 * i + 1]!;
  }
  return finish('swiss-roll', 2, n, pts, `swiss-roll(noise=${noise}, seed=${seed})`);
}

/** Three concentric circles of radii 1/3, 2/3 and 1. */
export function ringsDataset(p: ToyParams): Dataset {
  const n = p.n ?? 1000;
  const noise = p.noise ?? 0.05;
  const seed = p.seed ?? 0;
  const u = uniformStream(seed, STREAM.assign, n);
  const z = normalStream(seed, STREAM.points, 2 * n);
  const pts = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const r = ((i % 3) + 1) / 3;
    const a = 2 * Math.PI * u[i]!;
    pts[2 * i] = r * Math.cos(a) + noise * z[2 * i]!;
    pts[2 * i + 1] = r * Math.sin(a) + noise * z[2 * i + 1]!;
  }
  return finish('rings', 2, n, pts, `rings(noise=${noise}, seed=${seed})`);
}
