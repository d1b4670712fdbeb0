import type { DenoiseFn } from '@trajlab/core';

/** A denoiser ready to run on the active backend. */
export interface Denoiser {
  /** Kind from the spec: optimal | gaussian | gmm. */
  kind: string;
  dim: number;
  /** D(x; sigma) for a batch. */
  denoise: DenoiseFn;
  /** Floating-point operations of one evaluation for one sample (for plans and throughput figures). */
  flopsPerEval: number;
  /** Bytes of device memory held by the denoiser's parameters. */
  paramBytes: number;
  /** Human-readable description for logs and study.json. */
  describe: string;
  /** Releases device memory. */
  dispose(): void;
}
