import * as tf from '@tensorflow/tfjs-core';
import type { Solver } from './types.js';

/**
 * Heun's second-order method (EDM, Karras et al. 2022, Algorithm 1 without churn). The trapezoidal correction is
 * applied on every step including the last one (sigmaMin > 0), so NFE = 2S.
 * In the paper's finite-difference view this is Euler with the effective denoiser
 * D_i + (t_i / (2 t_{i+1})) (D(x~_{i+1}; t_{i+1}) - D_i), where x~_{i+1} is the Euler predictor.
 */
export const heun: Solver = async (denoise, x0, sigmas, _opts, onStep) => {
  const steps = sigmas.length - 1;
  let x = tf.clone(x0);
  let nfe = 0;
  for (let i = 0; i < steps; i++) {
    const t = sigmas[i]!;
    const tNext = sigmas[i + 1]!;
    const h = tNext - t;
    const denoised = denoise(x, t);
    await onStep({ i, sigma: t, x, denoised, nfe });
    const d = tf.tidy(() => tf.div(tf.sub(x, denoised), t) as tf.Tensor2D);
    const predictor = tf.tidy(() => tf.add(x, tf.mul(d, h)) as tf.Tensor2D);
    const denoisedNext = denoise(predictor, tNext);
    nfe += 2;
    const next = tf.tidy(() => {
      const dNext = tf.div(tf.sub(predictor, denoisedNext), tNext);
      return tf.add(x, tf.mul(tf.add(d, dNext), h / 2)) as tf.Tensor2D;
    });
    tf.dispose([denoised, d, predictor, denoisedNext, x]);
    x = next;
  }
  await onStep({ i: steps, sigma: sigmas[steps]!, x, denoised: null, nfe });
  return x;
};
