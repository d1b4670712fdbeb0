import * as tf from '@tensorflow/tfjs-core';
import type { Solver } from './types.js';

/**
 * DPM-Solver-2 (Lu et al. 2022) in k-diffusion's `sample_dpm_2` form, r = 1/2: an Euler half step to the geometric
 * midpoint s = sqrt(t_i t_{i+1}) (the midpoint in log sigma), then a full step with the slope evaluated there.
 * Effective denoiser (finite-difference view): D_i + (t_i / s) (D(x_s; s) - D_i). Two evaluations per step.
 */
export const dpmSolver2: Solver = async (denoise, x0, sigmas, _opts, onStep) => {
  const steps = sigmas.length - 1;
  let x = tf.clone(x0);
  let nfe = 0;
  for (let i = 0; i < steps; i++) {
    const t = sigmas[i]!;
    const tNext = sigmas[i + 1]!;
    const mid = Math.exp(0.5 * (Math.log(t) + Math.log(tNext)));
    const denoised = denoise(x, t);
    await onStep({ i, sigma: t, x, denoised, nfe });
    const xMid = tf.tidy(() => tf.add(x, tf.mul(tf.div(tf.sub(x, denoised), t), mid - t)) as tf.Tensor2D);
    const denoisedMid = denoise(xMid, mid);
    nfe += 2;
    const next = tf.tidy(() => tf.add(x, tf.mul(tf.div(tf.sub(xMid, denoisedMid), mid), tNext - t)) as tf.Tensor2D);
    tf.dispose([denoised, xMid, denoisedMid, x]);
    x = next;
  }
  await onStep({ i: steps, sigma: sigmas[steps]!, x, denoised: null, nfe });
  return x;
};
