import * as tf from '@tensorflow/tfjs-core';
import { nativeMatMulActive } from '@trajlab/backend';
import { normalStream, orthonormalizeColumns, symmetricEigen } from '@trajlab/core';

/** Mean and principal axes of a point set (covariance by a float32 product on the device, eigendecomposition in float64). */
export interface PrincipalComponents {
  mean: Float64Array;
  /** Variances along the axes, descending. */
  values: Float64Array;
  /** Row-major [dim, dim]; column k is the unit axis of values[k]. */
  vectors: Float64Array;
}

/** The covariance (1/rows) Xc^T Xc of row-major [rows, dim] points about `mean`: a float32 product on the device. */
function covariance(points: Float32Array, rows: number, dim: number, mean: Float64Array): tf.Tensor2D {
  return tf.tidy(() => {
    const xc = tf.sub(tf.tensor2d(points, [rows, dim]), tf.tensor2d(new Float32Array(mean), [1, dim]));
    // native products read xc transposed as it is (the same bits); wasm's own transposed-operand product is an order
    // of magnitude slower, so it gets a transposed copy
    const gram = nativeMatMulActive() ? tf.matMul(xc, xc, true, false) : tf.matMul(tf.transpose(xc), xc);
    return tf.div(gram, rows) as tf.Tensor2D;
  });
}

export function principalComponents(points: Float32Array, n: number, dim: number): PrincipalComponents {
  const mean = new Float64Array(dim);
  for (let i = 0; i < n; i++) for (let k = 0; k < dim; k++) mean[k] = mean[k]! + points[i * dim + k]!;
  for (let k = 0; k < dim; k++) mean[k] = mean[k]! / n;
  const cov = covariance(points, n, dim, mean);
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

/** Subspace iterations of the pruning axes (topAxesBySubspaceIteration's default). */
export const SUBSPACE_ITERATIONS = 12;
/** Points the pruning axes' covariance is estimated from, at most (topAxesBySubspaceIteration's default). */
export const SUBSPACE_MAX_POINTS = 2048;

/**
 * An orthonormal basis of (approximately) the top `rank` principal axes by subspace iteration on the device, for large
 * dim where a full eigendecomposition is slow. Any orthonormal basis gives a valid distance lower bound; the closer
 * to the principal axes, the tighter it is. So the covariance is estimated from at most `maxPoints` evenly strided
 * points (deterministic), which keeps the set-up of a large training set short.
 * Certified pruning's tables are kept on disk under a description of this computation (PRUNING_RECIPE in
 * training-set.ts): a change to it must change that description.
 * @param iterations subspace iterations (each a product with the covariance and a Gram-Schmidt pass on the host); on
 *   Fashion-MNIST 12 prune as many points as 30. @defaultValue 12
 * @param maxPoints points the covariance is estimated from. @defaultValue 2048
 */
export function topAxesBySubspaceIteration(points: Float32Array, n: number, dim: number, rank: number, iterations = SUBSPACE_ITERATIONS, maxPoints = SUBSPACE_MAX_POINTS): { mean: Float32Array; basis: Float32Array } {
  const m = Math.min(n, maxPoints);
  const sample = new Float32Array(m * dim);
  for (let i = 0; i < m; i++) sample.set(points.subarray(Math.floor((i * n) / m) * dim, (Math.floor((i * n) / m) + 1) * dim), i * dim);
  const mean = new Float64Array(dim);
  for (let i = 0; i < m; i++) for (let k = 0; k < dim; k++) mean[k] = mean[k]! + sample[i * dim + k]! / m;
  const cov = covariance(sample, m, dim, mean);
  // deterministic random start (fixed Philox stream)
  let v = normalStream(0x5eed, 0xd0000010, dim * rank);
  orthonormalizeColumns(v, dim, rank);
  for (let it = 0; it < iterations; it++) {
    // the host copy is taken outside tidy: tidy walks a returned typed array element by element
    const product = tf.tidy(() => tf.matMul(cov, tf.tensor2d(new Float32Array(v), [dim, rank])));
    v = new Float64Array(product.dataSync());
    product.dispose();
    // one Gram-Schmidt pass keeps the columns apart between products; the second, at the end, makes them orthonormal
    // to rounding (the bound needs an orthonormal basis, not exact principal axes)
    orthonormalizeColumns(v, dim, rank, it === iterations - 1 ? 2 : 1);
  }
  cov.dispose();
  return { mean: new Float32Array(mean), basis: new Float32Array(v) };
}
