import * as tf from '@tensorflow/tfjs-core';
import { combine, solveSmall } from './ops.js';
import type { Solver } from './types.js';

/**
 * UniPC (Zhao et al. 2023) with B(h) = expm1(-h) ("bh2") in data prediction, VE/EDM form (alpha = 1,
 * lambda = -log sigma). Each step is the UniP predictor of order p from the last p denoiser outputs, followed by the UniC
 * corrector, which evaluates D once at the predicted point and reuses that evaluation as the next step's D_i: one
 * evaluation per step, none on the last step (no corrector there).
 *   x~ = (t_{i+1}/t_i) x_i - phi_1 D_i - B(h) sum_k rho^p_k D1_k,   D1_k = (D_{i-k} - D_i) / r_k,
 *   x_{i+1} = (t_{i+1}/t_i) x_i - phi_1 D_i - B(h) (sum_k rho^c_k D1_k + rho^c_p (D(x~) - D_i)),
 * with r_k = (lambda_{i-k} - lambda_i) / h and rho from the order conditions R rho = b (rho = 1/2 for the two
 * lowest-order cases). The corrected points are not where D was evaluated, so they are reported without D.
 */
export const unipc: Solver = async (denoise, x0, sigmas, opts, onStep) => {
  const steps = sigmas.length - 1;
  const maxOrder = opts.order ?? 3;
  const lowerFinal = opts.lowerOrderFinal ?? true;
  const lambda = sigmas.map((s) => -Math.log(s));
  let x = tf.clone(x0);
  let nfe = 0;
  let current = denoise(x, sigmas[0]!); // D_i for the current point (an evaluation at x_0, then the corrector's)
  nfe += 1;
  const history: tf.Tensor2D[] = []; // previous D's, newest last
  for (let i = 0; i < steps; i++) {
    const t = sigmas[i]!;
    const tNext = sigmas[i + 1]!;
    await onStep({ i, sigma: t, x, denoised: i === 0 ? current : null, nfe: i === 0 ? 0 : nfe });
    let order = Math.min(maxOrder, i + 1);
    if (lowerFinal) order = Math.min(order, steps - i);
    const h = lambda[i + 1]! - lambda[i]!;
    const hh = -h;
    const hPhi1 = Math.expm1(hh); // = t_{i+1}/t_i - 1
    const bH = Math.expm1(hh);
    const rks: number[] = [];
    for (let k = 1; k < order; k++) rks.push((lambda[i - k]! - lambda[i]!) / h);
    rks.push(1);
    const R: number[][] = [];
    const b: number[] = [];
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    for (let k = 1; k <= order; k++) {
      R.push(rks.map((r) => r ** (k - 1)));
      b.push((hPhiK * factorial) / bH);
      factorial *= k + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    const prev = (k: number) => history[history.length - k]!; // D_{i-k}
    // Terms of sum_k rho_k D1_k as coefficients on D_i and D_{i-k}.
    const residual = (rho: number[]): [tf.Tensor2D, number][] => {
      const terms: [tf.Tensor2D, number][] = [];
      let onCurrent = 0;
      rho.forEach((r, k) => {
        const rk = rks[k]!;
        terms.push([prev(k + 1), r / rk]);
        onCurrent -= r / rk;
      });
      terms.push([current, onCurrent]);
      return terms;
    };
    const base: [tf.Tensor2D, number][] = [[x, tNext / t], [current, -hPhi1]];
    const rhoP = order === 1 ? [] : order === 2 ? [0.5] : solveSmall(R.slice(0, -1).map((row) => row.slice(0, -1)), b.slice(0, -1));
    const predicted = combine([...base, ...residual(rhoP).map(([tt, c]) => [tt, -bH * c] as [tf.Tensor2D, number])]);
    let next: tf.Tensor2D;
    let evaluated: tf.Tensor2D | null = null;
    if (i < steps - 1) {
      evaluated = denoise(predicted, tNext);
      nfe += 1;
      const rhoC = order === 1 ? [0.5] : solveSmall(R, b);
      const corr = residual(rhoC.slice(0, -1));
      const last = rhoC[rhoC.length - 1]!;
      next = combine([...base, ...corr.map(([tt, c]) => [tt, -bH * c] as [tf.Tensor2D, number]), [evaluated, -bH * last], [current, bH * last]]);
      predicted.dispose();
    } else {
      next = predicted;
    }
    x.dispose();
    x = next;
    history.push(current);
    while (history.length > maxOrder) history.shift()!.dispose();
    if (evaluated) current = evaluated;
  }
  tf.dispose(history.filter((h) => h !== current));
  current.dispose();
  await onStep({ i: steps, sigma: sigmas[steps]!, x, denoised: null, nfe });
  return x;
};
