/** Exact parameters of a Gaussian data distribution N(mean, U diag(eigenvalues) U^T), U orthonormal [dim, rank]. */
export interface AnalyticGaussian {
  kind: 'gaussian';
  mean: Float64Array;
  /** Row-major [dim, rank], orthonormal columns. */
  basis: Float64Array;
  rank: number;
  /** Variances along the basis columns (descending). */
  eigenvalues: Float64Array;
}

/** Exact parameters of a Gaussian mixture with diagonal (or isotropic) components. */
export interface AnalyticGmm {
  kind: 'gmm';
  /** Mixture weights, summing to 1. */
  weights: Float64Array;
  /** Row-major [components, dim]. */
  means: Float64Array;
  /** Per-component, per-dimension variances, row-major [components, dim]. */
  variances: Float64Array;
}

/** Layout of image data (flattened row-major, channels last). */
export interface ImageShape {
  height: number;
  width: number;
  channels: number;
}

/** A finite training set, plus the exact distribution it was drawn from when there is one. */
export interface Dataset {
  /** The dataset kind from the spec. */
  kind: string;
  dim: number;
  /** Number of training points. */
  n: number;
  /** Row-major [n, dim] float32. */
  points: Float32Array;
  /** sha256 (hex) of the dimensions and float32 contents: identifies the data whatever its source. */
  contentHash: string;
  /** The generating distribution of synthetic data (used by the analytic denoisers). */
  analytic?: AnalyticGaussian | AnalyticGmm;
  /** Set for image data. */
  image?: ImageShape;
  /** Human-readable origin (generator and parameters, or file). */
  source: string;
}
