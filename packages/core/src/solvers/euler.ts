import * as tf from '@tensorflow/tfjs-core';
import type { Solver } from './types.js';

/**
 * Euler's method on the PF-ODE: x_{i+1} = x_i + (t_{i+1} - t_i) d_i with d_i = (x_i - D(x_i; t_i)) / t_i.
 * Equivalently x_{i+1} = (t_{i+1}/t_i) x_i + (1 - t_{i+1}/t_i) D(x_i; t_i): a convex combination of the current point
 * and its denoising output (Chen et al., the Euler step as a move towards D). One evaluation per step.
 */
export const euler: Solver = async (denoise, x0, sigmas, _opts, onStep) => {
  const steps = sigmas.length - 1;
  let x = tf.clone(x0);
  let nfe = 0;
  for (let i = 0; i < steps; i++) {
    const t = sigmas[i]!;
    const tNext = sigmas[i + 1]!;
    const denoised = denoise(x, t);
    await onStep({ i, sigma: t, x, denoised, nfe });
    nfe += 1;
    const next = tf.tidy(() => tf.add(x, tf.mul(tf.div(tf.sub(x, denoised), t), tNext - t)) as tf.Tensor2D);
    denoised.dispose();
    x.dispose();
    x = next;
  }
  await onStep({ i: steps, sigma: sigmas[steps]!, x, denoised: null, nfe });
  return x;
};
