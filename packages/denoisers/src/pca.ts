import * as tf from '@tensorflow/tfjs-core';
import { symmetricEigen } from '@trajlab/core';

/** Mean and principal axes of a point set (covariance by a float32 product on the device, eigendecomposition in float64). */
export interface PrincipalComponents {
  mean: Float64Array;
  /** Variances along the axes, descending. */
  values: Float64Array;
  /** Row-major [dim, dim]; column k is the unit axis of values[k]. */
  vectors: Float64Array;
}

export function principalComponents(points: Float32Array, n: number, dim: number): PrincipalComponents {
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let k = 0; k < dim; k++) mean[k] = mean[k]! + points[i * dim + k]!;
  for (let k = 0; k < dim; k++) mean[k] = mean[k]! / n;
  const cov = tf.tidy(() => {
    const xc = tf.sub(tf.tensor2d(points, [n, dim]), tf.tensor2d(Float32Array.from(mean), [1, dim]));
    return tf.div(tf.matMul(xc, xc, true, false), n);
  });
  const c = Float64Array.from(cov.dataSync());
  cov.dispose();
  // symmetrise what float32 rounding left slightly asymmetric
  for (let a = 0; a < dim; a++) for (let b = 0; b < a; b++) c[a * dim + b] = c[b * dim + a] = 0.5 * (c[a * dim + b]! + c[b * dim + a]!);
  const { values, vectors } = symmetricEigen(c, dim, true);
  return { mean, values, vectors: vectors! };
}

/** The first `rank` axes as a row-major [dim, rank] matrix. */
export function topAxes(pc: PrincipalComponents, dim: number, rank: number): Float64Array {
  const basis = new Float64Array(dim * rank);
  for (let a = 0; a < dim; a++) for (let k = 0; k < rank; k++) basis[a * rank + k] = pc.vectors[a * dim + k]!;
  return basis;
}
