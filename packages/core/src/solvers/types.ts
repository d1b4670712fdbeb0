import type { Tensor2D } from '@tensorflow/tfjs-core';

/**
 * A denoiser D(x; sigma): the posterior-mean estimate of x_0 for a batch x of shape [batch, dim] at noise level sigma.
 * It returns a new tensor owned by the caller.
 */
export type DenoiseFn = (x: Tensor2D, sigma: number) => Tensor2D;

/** What a solver reports at each visited time point t_i (k-diffusion's `callback`). */
export interface StepEvent {
  /** Index of the time point, 0..S. */
  i: number;
  /** t_i = sigma_i. */
  sigma: number;
  /** x_i, shape [batch, dim]. Valid only during the callback: copy what you keep. */
  x: Tensor2D;
  /** D(x_i; t_i) as evaluated by the solver, or null where the solver did not evaluate it (the last point). */
  denoised: Tensor2D | null;
  /** Denoiser evaluations the solver spent to reach x_i (0 at i = 0). */
  nfe: number;
}

/** Observer of a solve; solvers await it, so it may download data. */
export type StepObserver = (event: StepEvent) => void | Promise<void>;

/** Solver options; each solver reads the ones it understands (the spec validates which apply). */
export interface SolverOptions {
  /** Maximum order of a multistep solver (ipndm, ipndm-v: 1..4; unipc: 1..3). @defaultValue per solver */
  order?: number;
  /** Use lower orders on the last steps when there are fewer than 10 steps (dpm-solver++, unipc). @defaultValue true */
  lowerOrderFinal?: boolean;
  /**
   * dpm-solver++3m only. `published`: the reference implementation's update, whose second-difference term is half the
   * Taylor coefficient (formally second order; what other libraries compute). `taylor`: that term doubled, exact for
   * quadratic D in lambda (third order). @defaultValue 'published'
   */
  variant?: 'published' | 'taylor';
  /** dpm-solver++2m/3m: dynamic thresholding of the data predictions (off unless given). @defaultValue off */
  thresholding?: { ratio?: number; maxValue?: number };
}

/**
 * One solver = one function with one signature: integrate the probability-flow ODE dx/dt = (x - D(x; t)) / t
 * along `sigmas` (S + 1 decreasing points) from x = x_0 (not consumed), reporting every point to `onStep`.
 * Returns x_S (owned by the caller).
 */
export type Solver = (
  denoise: DenoiseFn,
  x: Tensor2D,
  sigmas: readonly number[],
  opts: SolverOptions,
  onStep: StepObserver,
) => Promise<Tensor2D>;
