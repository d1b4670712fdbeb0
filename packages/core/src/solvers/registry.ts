import { deisTab3, ipndm, ipndmV } from './adams.js';
import { dpmSolver2 } from './dpm2.js';
import { dpmSolverPP2M, dpmSolverPP3M } from './dpmpp.js';
import { euler } from './euler.js';
import { heun } from './heun.js';
import type { Solver } from './types.js';
import { unipc } from './unipc.js';

/** What the planner and the README need to know about a solver. */
export interface SolverInfo {
  /** The solver function. */
  run: Solver;
  /** Nominal global order of accuracy (with the default options). */
  order: number;
  /** Denoiser evaluations per step (UniPC and the multistep solvers: 1; see nfe()). */
  nfePerStep: number;
  /** Options it reads, with their allowed range. */
  options: { order?: { min: number; max: number; default: number }; lowerOrderFinal?: boolean; variant?: readonly string[]; thresholding?: boolean };
  /** One line for tables. */
  description: string;
}

/** Every solver by its contract name. Adding a solver: one function, one line here, one test. */
export const SOLVERS = {
  euler: { run: euler, order: 1, nfePerStep: 1, options: {}, description: 'Euler (DDIM in the EDM parameterization)' },
  heun: { run: heun, order: 2, nfePerStep: 2, options: {}, description: "Heun's 2nd order (EDM Algorithm 1, no churn)" },
  'dpm-solver-2': { run: dpmSolver2, order: 2, nfePerStep: 2, options: {}, description: 'DPM-Solver-2, r = 1/2 (geometric midpoint)' },
  'dpm-solver++2m': { run: dpmSolverPP2M, order: 2, nfePerStep: 1, options: { lowerOrderFinal: true, thresholding: true }, description: 'DPM-Solver++(2M), data prediction, multistep' },
  'dpm-solver++3m': {
    run: dpmSolverPP3M,
    order: 2,
    nfePerStep: 1,
    options: { lowerOrderFinal: true, variant: ['published', 'taylor'], thresholding: true },
    description: 'DPM-Solver++(3M), data prediction, multistep (published update: order 2; variant taylor: order 3)',
  },
  ipndm: { run: ipndm, order: 4, nfePerStep: 1, options: { order: { min: 1, max: 4, default: 4 } }, description: 'iPNDM: Adams-Bashforth in sigma, fixed coefficients' },
  'ipndm-v': { run: ipndmV, order: 4, nfePerStep: 1, options: { order: { min: 1, max: 4, default: 4 } }, description: 'iPNDM-v: variable-step Adams-Bashforth in sigma' },
  'deis-tab3': { run: deisTab3, order: 4, nfePerStep: 1, options: {}, description: 'DEIS tAB3: cubic in VP time, exact integral' },
  unipc: { run: unipc, order: 4, nfePerStep: 1, options: { order: { min: 1, max: 3, default: 3 }, lowerOrderFinal: true }, description: 'UniPC bh2: predictor-corrector, evaluation reused' },
} as const satisfies Record<string, SolverInfo>;

export type SolverName = keyof typeof SOLVERS;
export const SOLVER_NAMES = Object.keys(SOLVERS) as SolverName[];

/** Denoiser evaluations a solver spends for S steps (the contract's NFE, before AFS and denoiseToZero). */
export function solverNfe(name: SolverName, steps: number): number {
  return SOLVERS[name].nfePerStep * steps;
}
