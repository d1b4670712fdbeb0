import * as tf from '@tensorflow/tfjs-core';
import { combine } from './ops.js';
import { dynamicThresholding } from './thresholding.js';
import type { Solver, SolverOptions } from './types.js';

/**
 * DPM-Solver++ multistep in data prediction (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and its third-order
 * extension), written for the VE/EDM form where alpha = 1 and lambda = -log sigma. With h = lambda_{i+1} - lambda_i and
 * phi_1 = expm1(-h) (so -phi_1 = 1 - t_{i+1}/t_i):
 *   order 1: x_{i+1} = (t_{i+1}/t_i) x_i - phi_1 D_i                                  (= Euler / DDIM)
 *   order 2: ... - phi_1 D_i - (phi_1 / 2) D1_0, D1_0 = (D_i - D_{i-1}) / r0, r0 = h_{i-1} / h
 *   order 3: ... - phi_1 D_i + phi_2 D1 - phi_3 D2 with phi_2 = phi_1/h + 1, phi_3 = phi_2/h - 1/2 and the divided
 *            differences D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1)/(r0 + r1).
 * `thresholding` applies dynamic thresholding to every data prediction (off by default).
 * The order ramps up over the first steps (warm-up) and, with `lowerOrderFinal` and fewer than 10 steps, down at the end.
 *
 * Note on order 3: a Taylor expansion of D around lambda_i gives D2 ~ h^2 D''/2, while the exact integral needs
 * -phi_3 h^2 D'' -- twice the published term. The published update is therefore exact only for D linear in lambda
 * (formally second order, with a smaller constant than 2M). `variant: 'taylor'` doubles the term and is third order.
 */
function dpmSolverPlusPlus(maxOrder: 2 | 3): Solver {
  return async (model, x0, sigmas, opts: SolverOptions, onStep) => {
    const denoise = opts.thresholding ? dynamicThresholding(model, opts.thresholding) : model;
    const steps = sigmas.length - 1;
    const lowerFinal = opts.lowerOrderFinal ?? true;
    const d2Scale = opts.variant === 'taylor' ? 2 : 1;
    const lambda = sigmas.map((s) => -Math.log(s));
    let x = tf.clone(x0);
    const history: tf.Tensor2D[] = [];
    let nfe = 0;
    for (let i = 0; i < steps; i++) {
      const t = sigmas[i]!;
      const tNext = sigmas[i + 1]!;
      const denoised = denoise(x, t);
      await onStep({ i, sigma: t, x, denoised, nfe });
      nfe += 1;
      history.push(denoised);
      let order = Math.min(maxOrder, i + 1);
      if (lowerFinal && steps < 10) order = Math.min(order, steps - i);
      const h = lambda[i + 1]! - lambda[i]!;
      const phi1 = Math.expm1(-h);
      const ratio = tNext / t;
      const d0 = history[history.length - 1]!;
      let next: tf.Tensor2D;
      if (order === 1) {
        next = combine([[x, ratio], [d0, -phi1]]);
      } else if (order === 2) {
        const r0 = (lambda[i]! - lambda[i - 1]!) / h;
        const d1 = history[history.length - 2]!;
        // - phi1 D_i - (phi1 / 2) (D_i - D_{i-1}) / r0
        next = combine([[x, ratio], [d0, -phi1 - phi1 / (2 * r0)], [d1, phi1 / (2 * r0)]]);
      } else {
        const r0 = (lambda[i]! - lambda[i - 1]!) / h;
        const r1 = (lambda[i - 1]! - lambda[i - 2]!) / h;
        const d1 = history[history.length - 2]!;
        const d2 = history[history.length - 3]!;
        const phi2 = phi1 / h + 1;
        const phi3 = phi2 / h - 0.5;
        // D1_0 = (d0 - d1)/r0, D1_1 = (d1 - d2)/r1; D1 = D1_0 + r0/(r0+r1)(D1_0 - D1_1); D2 = (D1_0 - D1_1)/(r0+r1)
        const a = 1 / r0;
        const b = 1 / r1;
        const k1 = r0 / (r0 + r1);
        const k2 = 1 / (r0 + r1);
        // coefficients of d0, d1, d2 in D1 and D2
        const D1 = [a + k1 * a, -a + k1 * (-a - b), k1 * b];
        const D2 = [d2Scale * k2 * a, d2Scale * k2 * (-a - b), d2Scale * k2 * b];
        next = combine([
          [x, ratio],
          [d0, -phi1 + phi2 * D1[0]! - phi3 * D2[0]!],
          [d1, phi2 * D1[1]! - phi3 * D2[1]!],
          [d2, phi2 * D1[2]! - phi3 * D2[2]!],
        ]);
      }
      x.dispose();
      x = next;
      while (history.length > maxOrder) history.shift()!.dispose();
    }
    tf.dispose(history);
    await onStep({ i: steps, sigma: sigmas[steps]!, x, denoised: null, nfe });
    return x;
  };
}

export const dpmSolverPP2M = dpmSolverPlusPlus(2);
export const dpmSolverPP3M = dpmSolverPlusPlus(3);
