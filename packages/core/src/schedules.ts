/**
 * Time (= noise level) schedules for the EDM form of the VE-SDE, where sigma(t) = t.
 * Every schedule returns S + 1 strictly decreasing sigmas t_0 = sigmaMax > ... > t_S = sigmaMin.
 */

import { vpTime } from './vp.js';

/** Names of the schedules (gits is computed from teacher trajectories, see gits.ts). */
export const SCHEDULE_NAMES = ['polynomial', 'logsnr', 'time-uniform', 'custom', 'gits'] as const;
export type ScheduleName = (typeof SCHEDULE_NAMES)[number];

/** Parameters shared by the built-in schedules. */
export interface ScheduleParams {
  /** Number of solver steps S (the schedule has S + 1 points). */
  steps: number;
  /** Smallest noise level, reached at the last point. */
  sigmaMin: number;
  /** Largest noise level, the first point. */
  sigmaMax: number;
  /** Exponent of the polynomial schedule (default 7) or of the time-uniform one (default 1). */
  rho?: number;
  /** Explicit sigmas for `custom` (strictly decreasing, all > 0). */
  sigmas?: readonly number[];
}

/**
 * EDM's polynomial schedule (Karras et al. 2022, eq. 5):
 * t_i = (smax^(1/rho) + i/S (smin^(1/rho) - smax^(1/rho)))^rho.
 */
export function polynomialSigmas(steps: number, sigmaMin: number, sigmaMax: number, rho = 7): number[] {
  const a = sigmaMax ** (1 / rho);
  const b = sigmaMin ** (1 / rho);
  const out: number[] = [];
  for (let i = 0; i <= steps; i++) out.push((a + (i / steps) * (b - a)) ** rho);
  out[0] = sigmaMax;
  out[steps] = sigmaMin;
  return out;
}

/** Uniform steps in log-SNR (log sigma): a geometric sequence from sigmaMax to sigmaMin. */
export function logSnrSigmas(steps: number, sigmaMin: number, sigmaMax: number): number[] {
  const la = Math.log(sigmaMax);
  const lb = Math.log(sigmaMin);
  const out: number[] = [];
  for (let i = 0; i <= steps; i++) out.push(Math.exp(la + (i / steps) * (lb - la)));
  out[0] = sigmaMax;
  out[steps] = sigmaMin;
  return out;
}

/**
 * Uniform in VP time (DPM-Solver's "time_uniform"): tau_i = (1 + i/S (epsilon^(1/rho) - 1))^rho from 1 to
 * epsilon = 1e-3, mapped to sigma by the VP process fitted to [sigmaMin, sigmaMax] (rho = 1: uniform in tau).
 */
export function timeUniformSigmas(steps: number, sigmaMin: number, sigmaMax: number, rho = 1): number[] {
  const vp = vpTime(sigmaMin, sigmaMax);
  const out: number[] = [];
  for (let i = 0; i <= steps; i++) out.push(vp.sigma((1 + (i / steps) * (vp.epsilon ** (1 / rho) - 1)) ** rho));
  out[0] = sigmaMax;
  out[steps] = sigmaMin;
  return out;
}

/** Checks that sigmas are finite, positive and strictly decreasing; returns the first problem or null. */
export function checkSigmas(sigmas: readonly number[]): string | null {
  if (sigmas.length < 2) return 'needs at least 2 sigmas (one step)';
  for (let i = 0; i < sigmas.length; i++) {
    const s = sigmas[i]!;
    if (!Number.isFinite(s) || s <= 0) return `sigma[${i}] = ${s} is not a finite positive number`;
    if (i > 0 && s >= sigmas[i - 1]!) return `sigmas must strictly decrease, but sigma[${i}] = ${s} >= sigma[${i - 1}] = ${sigmas[i - 1]}`;
  }
  return null;
}

/** Builds the sigma sequence of a schedule. Throws on an unknown name or invalid custom sigmas. */
export function buildSigmas(name: ScheduleName, p: ScheduleParams): number[] {
  switch (name) {
    case 'polynomial':
      return polynomialSigmas(p.steps, p.sigmaMin, p.sigmaMax, p.rho ?? 7);
    case 'logsnr':
      return logSnrSigmas(p.steps, p.sigmaMin, p.sigmaMax);
    case 'time-uniform':
      return timeUniformSigmas(p.steps, p.sigmaMin, p.sigmaMax, p.rho ?? 1);
    case 'gits':
      throw new Error('gits sigmas are computed from teacher trajectories (gitsSchedule), not from a formula');
    case 'custom': {
      const s = [...(p.sigmas ?? [])];
      const problem = checkSigmas(s);
      if (problem) throw new Error(`custom schedule: ${problem}`);
      return s;
    }
  }
}
