import * as tf from '@tensorflow/tfjs-core';
import type { DenoiseFn } from './types.js';

/**
 * Analytical first step (AFS, Zhou et al. 2024): at t_0 >> 1 the noise estimate is approximated by the normalised input,
 * d_0 = x_0 / sqrt(1 + t_0^2), i.e. D(x_0; t_0) ~ x_0 - t_0 d_0, saving one evaluation. Wraps a denoiser so that its
 * first call (every solver's first call is at (x_0, t_0)) returns the analytic value without evaluating the model.
 */
export function analyticFirstStep(denoise: DenoiseFn): DenoiseFn {
  let first = true;
  return (x, t) => {
    if (first) {
      first = false;
      return tf.tidy(() => tf.mul(x, 1 - t / Math.sqrt(1 + t * t)) as tf.Tensor2D);
    }
    return denoise(x, t);
  };
}
