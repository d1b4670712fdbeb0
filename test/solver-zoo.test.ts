import * as tf from '@tensorflow/tfjs-core';
import { polynomialSigmas, SOLVERS, type DenoiseFn, type SolverName, type SolverOptions, type StepEvent } from '@trajlab/core';
import { gmmDataset } from '@trajlab/datasets';
import { gmmDenoiser } from '@trajlab/denoisers';
import { describe, expect, it } from 'vitest';
import * as ref from './reference-solvers.js';

// ---- exact Gaussian flow: N(mu, diag(l)), D = mu + l/(l + t^2) (x - mu), x_t = mu + sqrt((l + t^2)/(l + T^2)) (x_T - mu)
const mu = [0.5, -1, 2];
const lambda = [2, 0.5, 0.05];
const gaussD: DenoiseFn = (x, t) =>
  tf.tidy(() => {
    const m = tf.tensor2d([mu]);
    return tf.add(m, tf.mul(tf.tensor2d([lambda.map((l) => l / (l + t * t))]), tf.sub(x, m))) as tf.Tensor2D;
  });
const x0 = [
  [80, -40, 20],
  [-10, 70, 5],
];
const exactEnd = x0.map((row) => row.map((v, k) => mu[k]! + Math.sqrt((lambda[k]! + 0.002 ** 2) / (lambda[k]! + 6400)) * (v - mu[k]!)));

async function globalError(name: SolverName, steps: number, opts: SolverOptions = {}): Promise<number> {
  const x = tf.tensor2d(x0);
  const out = await SOLVERS[name].run(gaussD, x, polynomialSigmas(steps, 0.002, 80), opts, () => {});
  const f = out.arraySync();
  tf.dispose([x, out]);
  return Math.max(...f.flatMap((r, i) => r.map((v, k) => Math.abs(v - exactEnd[i]![k]!))));
}

/** Expected global order on this problem (polynomial rho-7 grid), with the measured reason where it is not nominal. */
const ORDERS: [SolverName, SolverOptions, number, number[]][] = [
  ['euler', {}, 1, [32, 64, 128]],
  ['heun', {}, 2, [16, 32, 64]],
  ['dpm-solver-2', {}, 2, [16, 32, 64]],
  ['dpm-solver++2m', {}, 2, [32, 64, 128]],
  // The published 3M update is exact only for D linear in lambda: second order (see dpmpp.ts).
  ['dpm-solver++3m', {}, 2, [64, 128, 256]],
  ['dpm-solver++3m', { variant: 'taylor' }, 3, [16, 32, 64]],
  // Fixed equal-step Adams-Bashforth coefficients on a non-uniform grid: second order, whatever the nominal order 4.
  ['ipndm', {}, 2, [32, 64, 128]],
  ['ipndm-v', {}, 4, [16, 32, 64]],
  ['deis-tab3', {}, 4, [16, 32, 64]],
  ['unipc', {}, 4, [16, 32, 64]],
  ['unipc', { order: 2 }, 3, [16, 32, 64]],
];

describe('empirical order on the exact Gaussian flow (log-log slope of global error vs steps)', () => {
  for (const [name, opts, order, steps] of ORDERS) {
    it(`${name} ${JSON.stringify(opts)}: order ~${order}`, async () => {
      const errs = [];
      for (const S of steps) errs.push(await globalError(name, S, opts));
      const slope = Math.log2(errs[1]! / errs[2]!);
      expect(slope, `errors ${errs.map((e) => e.toExponential(2)).join(', ')}`).toBeGreaterThan(order - 0.6);
      expect(slope, `errors ${errs.map((e) => e.toExponential(2)).join(', ')}`).toBeLessThan(order + 0.7);
    });
  }
});

// ---- step by step against float64 on a small mixture
const data = gmmDataset({ dim: 2, components: 4, n: 10, seed: 4, spread: 2, std: 0.4, covariance: 'diagonal', weights: 'random' });
const g = data.analytic as Extract<typeof data.analytic, { kind: 'gmm' }>;
const gmm32 = gmmDenoiser(g);
const gmm64: ref.Den = (x, t) => {
  const K = g.weights.length;
  const logr = Array.from({ length: K }, (_, k) => {
    let s = Math.log(g.weights[k]!);
    for (let a = 0; a < 2; a++) {
      const v = g.variances[k * 2 + a]! + t * t;
      s += -0.5 * ((x[a]! - g.means[k * 2 + a]!) ** 2 / v + Math.log(2 * Math.PI * v));
    }
    return s;
  });
  const m = Math.max(...logr);
  const w = logr.map((l) => Math.exp(l - m));
  const z = w.reduce((a, b) => a + b, 0);
  return [0, 1].map((a) => w.reduce((acc, wk, k) => {
    const v = g.variances[k * 2 + a]!;
    return acc + (wk / z) * (g.means[k * 2 + a]! + (v / (v + t * t)) * (x[a]! - g.means[k * 2 + a]!));
  }, 0));
};
const REFS: [SolverName, SolverOptions, (D: ref.Den, x: number[], s: number[]) => number[][]][] = [
  ['euler', {}, ref.refEuler],
  ['heun', {}, ref.refHeun],
  ['dpm-solver-2', {}, ref.refDpm2],
  ['dpm-solver++2m', {}, (D, x, s) => ref.refDpmpp2m(D, x, s)],
  ['dpm-solver++3m', {}, (D, x, s) => ref.refDpmpp3m(D, x, s, 1)],
  ['dpm-solver++3m', { variant: 'taylor' }, (D, x, s) => ref.refDpmpp3m(D, x, s, 2)],
  ['ipndm', {}, ref.refIpndm],
  ['ipndm-v', {}, ref.refIpndmV],
  ['deis-tab3', {}, ref.refDeisTab3],
  ['unipc', {}, (D, x, s) => ref.refUnipc(D, x, s, 3)],
  ['unipc', { order: 2 }, (D, x, s) => ref.refUnipc(D, x, s, 2)],
];

describe('each solver matches a float64 reference implementation step by step on a mixture', () => {
  const starts = [
    [60, -25],
    [-33, 47],
  ];
  for (const [name, opts, impl] of REFS) {
    for (const S of [6, 12]) {
      it(`${name} ${JSON.stringify(opts)}, ${S} steps`, async () => {
        const sigmas = polynomialSigmas(S, 0.002, 80);
        const seen: number[][][] = [];
        const x = tf.tensor2d(starts);
        const out = await SOLVERS[name].run(gmm32.denoise, x, sigmas, opts, (e: StepEvent) => void seen.push(e.x.arraySync()));
        tf.dispose([x, out]);
        expect(seen).toHaveLength(S + 1);
        starts.forEach((s0, r) => {
          const want = impl(gmm64, s0, sigmas);
          want.forEach((p, i) => p.forEach((v, a) => expect(Math.abs(seen[i]![r]![a]! - v), `point ${i}`).toBeLessThan(2e-4 * Math.max(1, Math.abs(v)))));
        });
      });
    }
  }
});

describe('multistep solvers are Euler with a finite-difference effective denoiser', () => {
  async function record(name: SolverName, S: number, opts: SolverOptions = {}) {
    const sigmas = polynomialSigmas(S, 0.002, 80);
    const events: { x: number[][]; d: number[][] | null }[] = [];
    const x = tf.tensor2d([[55, -30]]);
    const out = await SOLVERS[name].run(gmm32.denoise, x, sigmas, opts, (e) => void events.push({ x: e.x.arraySync(), d: e.denoised?.arraySync() ?? null }));
    tf.dispose([x, out]);
    return { sigmas, events };
  }
  const eulerWith = (x: number[], dEff: number[], t: number, tn: number) => x.map((v, k) => v + ((tn - t) * (v - dEff[k]!)) / t);

  it('DPM-Solver++(2M): D_eff = D_i + (D_i - D_{i-1}) / (2 r), r = h_{i-1} / h_i', async () => {
    const { sigmas, events } = await record('dpm-solver++2m', 12);
    for (let i = 1; i < 12; i++) {
      const h = Math.log(sigmas[i]! / sigmas[i + 1]!);
      const r = Math.log(sigmas[i - 1]! / sigmas[i]!) / h;
      const di = events[i]!.d![0]!;
      const dp = events[i - 1]!.d![0]!;
      const dEff = di.map((v, k) => v + (v - dp[k]!) / (2 * r));
      eulerWith(events[i]!.x[0]!, dEff, sigmas[i]!, sigmas[i + 1]!).forEach((v, k) => expect(v).toBeCloseTo(events[i + 1]!.x[0]![k]!, 3));
    }
  });

  it('DPM-Solver++(3M): D_eff = D_i - (phi_2 D1 - phi_3 D2) / phi_1 (first and second divided differences of D)', async () => {
    const { sigmas, events } = await record('dpm-solver++3m', 12, { variant: 'taylor' });
    const lam = sigmas.map((s) => -Math.log(s));
    for (let i = 2; i < 12; i++) {
      const h = lam[i + 1]! - lam[i]!;
      const r0 = (lam[i]! - lam[i - 1]!) / h;
      const r1 = (lam[i - 1]! - lam[i - 2]!) / h;
      const [m0, m1, m2] = [events[i]!.d![0]!, events[i - 1]!.d![0]!, events[i - 2]!.d![0]!];
      const phi1 = Math.expm1(-h);
      const phi2 = phi1 / h + 1;
      const phi3 = phi2 / h - 0.5;
      const dEff = m0.map((v, k) => {
        const d10 = (v - m1[k]!) / r0;
        const d11 = (m1[k]! - m2[k]!) / r1;
        const D1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
        const D2 = (2 * (d10 - d11)) / (r0 + r1);
        return v - (phi2 * D1 - phi3 * D2) / phi1;
      });
      eulerWith(events[i]!.x[0]!, dEff, sigmas[i]!, sigmas[i + 1]!).forEach((v, k) => expect(v).toBeCloseTo(events[i + 1]!.x[0]![k]!, 3));
    }
  });
});
