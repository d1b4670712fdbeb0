import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { polynomialSigmas } from '../schedules.js';
import { SOLVERS, type SolverName } from './registry.js';
import type { DenoiseFn, StepEvent } from './types.js';

// Diagonal Gaussian data N(mu, diag(l)): D(x; t) = mu + l / (l + t^2) (x - mu), and the PF-ODE has the exact flow
// x_t = mu + sqrt((l + t^2) / (l + T^2)) (x_T - mu).
const mu = [0.5, -1, 2];
const lambda = [2, 0.5, 0.01];
const gaussianD: DenoiseFn = (x, t) =>
  tf.tidy(() => {
    const m = tf.tensor2d([mu]);
    const shrink = tf.tensor2d([lambda.map((l) => l / (l + t * t))]);
    return tf.add(m, tf.mul(shrink, tf.sub(x, m))) as tf.Tensor2D;
  });
const x0 = [
  [80, -40, 20],
  [-10, 70, 5],
];
function exactFlow(t: number, T: number): number[][] {
  return x0.map((row) => row.map((v, k) => mu[k]! + Math.sqrt((lambda[k]! + t * t) / (lambda[k]! + T * T)) * (v - mu[k]!)));
}

async function solve(name: SolverName, sigmas: number[], denoise: DenoiseFn = gaussianD) {
  const events: { i: number; sigma: number; nfe: number; x: number[][]; d: number[][] | null }[] = [];
  const onStep = (e: StepEvent) => {
    events.push({ i: e.i, sigma: e.sigma, nfe: e.nfe, x: e.x.arraySync(), d: e.denoised?.arraySync() ?? null });
  };
  const x = tf.tensor2d(x0);
  const out = await SOLVERS[name].run(denoise, x, sigmas, {}, onStep);
  const final = out.arraySync();
  tf.dispose([x, out]);
  return { final, events };
}

function maxErr(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, r) => row.forEach((v, k) => (m = Math.max(m, Math.abs(v - b[r]![k]!)))));
  return m;
}

describe('solvers on the exact Gaussian flow', () => {
  it('Heun with many steps reaches the closed-form endpoint', async () => {
    const sigmas = polynomialSigmas(256, 0.002, 80);
    const { final } = await solve('heun', sigmas);
    expect(maxErr(final, exactFlow(0.002, 80))).toBeLessThan(2e-3);
  });

  it("Heun's global error shrinks about 4x when the steps double (second order)", async () => {
    const errs: number[] = [];
    for (const S of [16, 32, 64]) {
      const { final } = await solve('heun', polynomialSigmas(S, 0.002, 80));
      errs.push(maxErr(final, exactFlow(0.002, 80)));
    }
    for (let k = 0; k + 1 < errs.length; k++) {
      const ratio = errs[k]! / errs[k + 1]!;
      expect(ratio).toBeGreaterThan(3);
      expect(ratio).toBeLessThan(5.5);
    }
  });

  it("Euler's error shrinks about 2x when the steps double (first order)", async () => {
    const a = maxErr((await solve('euler', polynomialSigmas(64, 0.002, 80))).final, exactFlow(0.002, 80));
    const b = maxErr((await solve('euler', polynomialSigmas(128, 0.002, 80))).final, exactFlow(0.002, 80));
    expect(a / b).toBeGreaterThan(1.6);
    expect(a / b).toBeLessThan(2.5);
  });

  it('a constant denoiser (one data point) makes Euler exact', async () => {
    const y = [0.3, -0.7, 1.1];
    const point: DenoiseFn = (x) => tf.tidy(() => tf.tile(tf.tensor2d([y]), [x.shape[0], 1]) as tf.Tensor2D);
    const sigmas = polynomialSigmas(5, 0.002, 80);
    const { final, events } = await solve('euler', sigmas, point);
    const exact = x0.map((row) => row.map((v, k) => y[k]! + (0.002 / 80) * (v - y[k]!)));
    expect(maxErr(final, exact)).toBeLessThan(1e-5);
    // Every intermediate point is on the exact flow too.
    for (const e of events) {
      const ex = x0.map((row) => row.map((v, k) => y[k]! + (e.sigma / 80) * (v - y[k]!)));
      expect(maxErr(e.x, ex)).toBeLessThan(1e-4);
    }
  });
});

describe('NFE accounting and events', () => {
  for (const name of Object.keys(SOLVERS) as SolverName[]) {
    it(`${name}: reports S + 1 points, counts every evaluation, D only where evaluated`, async () => {
      let calls = 0;
      const counting: DenoiseFn = (x, t) => {
        calls++;
        return gaussianD(x, t);
      };
      const S = 7;
      const { events } = await solve(name, polynomialSigmas(S, 0.002, 80), counting);
      expect(events.map((e) => e.i)).toEqual([...Array(S + 1).keys()]);
      expect(events[S]!.nfe).toBe(calls);
      expect(calls).toBe(SOLVERS[name].nfePerStep * S);
      if (name === 'unipc') {
        // The corrector evaluates D at the predicted point and reuses it: D is reported only at x_0, where it was
        // evaluated exactly; reaching x_i (i >= 1) took i + 1 evaluations, the last step none.
        expect(events.map((e) => e.nfe)).toEqual([0, ...Array.from({ length: S - 1 }, (_, i) => i + 2), S]);
        expect(events.slice(1).every((e) => e.d === null)).toBe(true);
      } else {
        expect(events.every((e, i) => e.nfe === SOLVERS[name].nfePerStep * i)).toBe(true);
        expect(events.slice(0, S).every((e) => e.d !== null)).toBe(true);
      }
      expect(events[S]!.d).toBeNull();
    });
  }
});

describe('second-order solvers are Euler with a finite-difference effective denoiser', () => {
  // Record every evaluation (input, sigma, output), then replay each step as an Euler step with D_eff.
  async function recorded(name: SolverName, S: number) {
    const evals: { sigma: number; out: number[][] }[] = [];
    const rec: DenoiseFn = (x, t) => {
      const d = gaussianD(x, t);
      evals.push({ sigma: t, out: d.arraySync() });
      return d;
    };
    const sigmas = polynomialSigmas(S, 0.002, 80);
    const { events } = await solve(name, sigmas, rec);
    return { sigmas, evals, events };
  }

  it('Heun: D_eff = D_n + t_n / (2 t_{n+1}) (D~ - D_n)', async () => {
    const { sigmas, evals, events } = await recorded('heun', 6);
    for (let n = 0; n < 6; n++) {
      const t = sigmas[n]!;
      const tn = sigmas[n + 1]!;
      const dn = evals[2 * n]!.out;
      const dTilde = evals[2 * n + 1]!.out;
      expect(evals[2 * n + 1]!.sigma).toBe(tn);
      const x = events[n]!.x;
      const predicted = x.map((row, r) =>
        row.map((v, k) => {
          const dEff = dn[r]![k]! + (t / (2 * tn)) * (dTilde[r]![k]! - dn[r]![k]!);
          return v + ((tn - t) * (v - dEff)) / t;
        }),
      );
      expect(maxErr(predicted, events[n + 1]!.x)).toBeLessThan(1e-4 * Math.max(1, t));
    }
  });

  it('DPM-Solver-2: D_eff = D_n + (t_n / s) (D(x_s; s) - D_n) with s = sqrt(t_n t_{n+1})', async () => {
    const { sigmas, evals, events } = await recorded('dpm-solver-2', 6);
    for (let n = 0; n < 6; n++) {
      const t = sigmas[n]!;
      const tn = sigmas[n + 1]!;
      const s = Math.sqrt(t * tn);
      expect(evals[2 * n + 1]!.sigma).toBeCloseTo(s, 10);
      const dn = evals[2 * n]!.out;
      const dMid = evals[2 * n + 1]!.out;
      const predicted = events[n]!.x.map((row, r) =>
        row.map((v, k) => {
          const dEff = dn[r]![k]! + (t / s) * (dMid[r]![k]! - dn[r]![k]!);
          return v + ((tn - t) * (v - dEff)) / t;
        }),
      );
      expect(maxErr(predicted, events[n + 1]!.x)).toBeLessThan(1e-4 * Math.max(1, t));
    }
  });
});
