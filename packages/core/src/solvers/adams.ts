import * as tf from '@tensorflow/tfjs-core';
import { vpTime } from '../vp.js';
import { adamsCoefficients, combine, derivative } from './ops.js';
import type { DenoiseFn, Solver, StepObserver } from './types.js';

/**
 * Linear multistep solvers on the PF-ODE dx/dt = d(x, t), d = (x - D)/t, all of the form
 *   x_{i+1} = x_i + sum_j c_{i,j} d_{i-j}
 * with a warm start (order min(maxOrder, i + 1) at step i) and one evaluation per step.
 */
async function adamsBashforth(
  denoise: DenoiseFn,
  x0: tf.Tensor2D,
  sigmas: readonly number[],
  maxOrder: number,
  coefficients: (i: number, order: number) => number[],
  onStep: StepObserver,
): Promise<tf.Tensor2D> {
  const steps = sigmas.length - 1;
  let x = tf.clone(x0);
  const history: tf.Tensor2D[] = []; // newest last
  let nfe = 0;
  for (let i = 0; i < steps; i++) {
    const t = sigmas[i]!;
    const denoised = denoise(x, t);
    await onStep({ i, sigma: t, x, denoised, nfe });
    nfe += 1;
    history.push(derivative(x, denoised, t));
    denoised.dispose();
    const order = Math.min(maxOrder, i + 1);
    const c = coefficients(i, order);
    const next = combine([[x, 1], ...c.map((cj, j) => [history[history.length - 1 - j]!, cj] as const)]);
    x.dispose();
    x = next;
    while (history.length > maxOrder - 1) history.shift()!.dispose();
  }
  tf.dispose(history);
  await onStep({ i: steps, sigma: sigmas[steps]!, x, denoised: null, nfe });
  return x;
}

/** Adams-Bashforth coefficients for equal steps (orders 1-4), to be multiplied by the step h. */
const AB_FIXED = [[1], [3 / 2, -1 / 2], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]];

/**
 * iPNDM (Zhang & Chen 2023; the improved PNDM of DEIS): Adams-Bashforth in sigma on d with the fixed equal-step
 * coefficients, whatever the actual step sizes, order up to `order` (default 4) after a lower-order warm start.
 */
export const ipndm: Solver = (denoise, x0, sigmas, opts, onStep) =>
  adamsBashforth(denoise, x0, sigmas, opts.order ?? 4, (i, order) => AB_FIXED[order - 1]!.map((c) => c * (sigmas[i + 1]! - sigmas[i]!)), onStep);

/**
 * iPNDM-v: variable-step Adams-Bashforth in sigma, c_j = integral over [t_i, t_{i+1}] of the Lagrange basis polynomial
 * of t_{i-j} among the last `order` nodes (default 4), exact for the actual non-uniform grid.
 */
export const ipndmV: Solver = (denoise, x0, sigmas, opts, onStep) =>
  adamsBashforth(denoise, x0, sigmas, opts.order ?? 4, (i, order) => adamsCoefficients(sigmas.slice(i - order + 1, i + 1).reverse(), sigmas[i + 1]!), onStep);

/**
 * DEIS tAB3 (Zhang & Chen 2023): the noise estimate d is extrapolated by a cubic in VP time tau (current point plus
 * three previous, lower order during warm-up) and integrated exactly against d sigma / d tau:
 * c_j = integral over [tau_i, tau_{i+1}] of L_j(tau) sigma'(tau) d tau. The VP time is fitted to the grid's sigma range.
 */
export const deisTab3: Solver = (denoise, x0, sigmas, _opts, onStep) => {
  const vp = vpTime(sigmas[sigmas.length - 1]!, sigmas[0]!);
  const taus = sigmas.map((s) => vp.tau(s));
  return adamsBashforth(
    denoise,
    x0,
    sigmas,
    4,
    (i, order) => (order === 1 ? [sigmas[i + 1]! - sigmas[i]!] : adamsCoefficients(taus.slice(i - order + 1, i + 1).reverse(), taus[i + 1]!, vp.dSigma, 16)),
    onStep,
  );
};
