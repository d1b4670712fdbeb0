import * as tf from '@tensorflow/tfjs-core';
import type { AnalyticGaussian, AnalyticGmm } from '@trajlab/datasets';
import { principalComponents, topAxes } from './pca.js';
import type { Denoiser } from './types.js';

/**
 * Exact denoiser of Gaussian data N(mu, U diag(l) U^T): D(x; t) = mu + U diag(l / (l + t^2)) U^T (x - mu)
 * (Tweedie's formula for a Gaussian prior). Directions outside the range of U are shrunk to mu entirely.
 */
export function gaussianDenoiser(g: AnalyticGaussian): Denoiser {
  const dim = g.mean.length;
  const r = g.rank;
  const mean = tf.tensor2d(Float32Array.from(g.mean), [1, dim]);
  const basis = tf.tensor2d(Float32Array.from(g.basis), [dim, r]);
  const basisT = tf.tidy(() => tf.transpose(basis) as tf.Tensor2D);
  return {
    kind: 'gaussian',
    dim,
    denoise: (x, t) =>
      tf.tidy(() => {
        const shrink = tf.tensor2d(Float32Array.from(g.eigenvalues, (l) => l / (l + t * t)), [1, r]);
        const coords = tf.mul(tf.matMul(tf.sub(x, mean), basis), shrink);
        return tf.add(mean, tf.matMul(coords, basisT)) as tf.Tensor2D;
      }),
    flopsPerEval: 4 * dim * r + 3 * dim,
    paramBytes: 4 * (2 * dim * r + dim),
    describe: `gaussian(dim=${dim}, rank=${r})`,
    dispose: () => tf.dispose([mean, basis, basisT]),
  };
}

/**
 * Fits N(mean, covariance) to a training set (covariance by a float32 matrix product, eigendecomposition in float64),
 * keeping directions with variance above `relTol` times the largest.
 */
export function fitGaussian(points: Float32Array, n: number, dim: number, relTol = 1e-9): AnalyticGaussian {
  const pc = principalComponents(points, n, dim);
  const top = Math.max(pc.values[0]!, 0);
  let rank = 0;
  while (rank < dim && pc.values[rank]! > relTol * top) rank++;
  rank = Math.max(rank, 1);
  return { kind: 'gaussian', mean: pc.mean, basis: topAxes(pc, dim, rank), rank, eigenvalues: pc.values.slice(0, rank).map((v) => Math.max(v, 0)) };
}

/**
 * Exact denoiser of a Gaussian mixture with diagonal components (mixture smoothed by N(0, t^2 I)):
 * D(x; t) = sum_k r_k(x) [mu_k + v_k / (v_k + t^2) * (x - mu_k)], r_k proportional to pi_k N(x; mu_k, diag(v_k + t^2)).
 */
export function gmmDenoiser(g: AnalyticGmm): Denoiser {
  const K = g.weights.length;
  const dim = g.means.length / K;
  const means = tf.tensor3d(Float32Array.from(g.means), [1, K, dim]);
  const variances = tf.tensor3d(Float32Array.from(g.variances), [1, K, dim]);
  const logWeights = tf.tensor2d(Float32Array.from(g.weights, Math.log), [1, K]);
  return {
    kind: 'gmm',
    dim,
    denoise: (x, t) =>
      tf.tidy(() => {
        const diff = tf.sub(tf.expandDims(x, 1), means); // [B, K, dim]
        const varT = tf.add(variances, t * t); // [1, K, dim]
        const logLik = tf.mul(tf.sum(tf.add(tf.div(tf.square(diff), varT), tf.log(tf.mul(varT, 2 * Math.PI))), 2), -0.5);
        const resp = tf.softmax(tf.add(logWeights, logLik), 1); // [B, K]
        const posteriorMeans = tf.add(means, tf.mul(tf.div(variances, varT), diff)); // [B, K, dim]
        return tf.sum(tf.mul(tf.expandDims(resp, 2), posteriorMeans), 1) as tf.Tensor2D;
      }),
    flopsPerEval: 12 * K * dim,
    paramBytes: 4 * (2 * K * dim + K),
    describe: `gmm(components=${K}, dim=${dim})`,
    dispose: () => tf.dispose([means, variances, logWeights]),
  };
}
