import { dpmSolver2 } from './dpm2.js';
import { euler } from './euler.js';
import { heun } from './heun.js';
import type { Solver } from './types.js';

/** What the planner and the README need to know about a solver. */
export interface SolverInfo {
  /** The solver function. */
  run: Solver;
  /** Global order of accuracy. */
  order: number;
  /** Denoiser evaluations per step. */
  nfePerStep: number;
  /** One line for tables. */
  description: string;
}

/** Every solver by its contract name. Adding a solver: one function, one line here, one test. */
export const SOLVERS = {
  euler: { run: euler, order: 1, nfePerStep: 1, description: 'Euler (DDIM in the EDM parameterization)' },
  heun: { run: heun, order: 2, nfePerStep: 2, description: "Heun's 2nd order (EDM Algorithm 1, no churn)" },
  'dpm-solver-2': { run: dpmSolver2, order: 2, nfePerStep: 2, description: 'DPM-Solver-2, r = 1/2 (geometric midpoint)' },
} as const satisfies Record<string, SolverInfo>;

export type SolverName = keyof typeof SOLVERS;
export const SOLVER_NAMES = Object.keys(SOLVERS) as SolverName[];

/** Denoiser evaluations a solver spends for S steps (the contract's NFE, without denoiseToZero). */
export function solverNfe(name: SolverName, steps: number): number {
  return SOLVERS[name].nfePerStep * steps;
}
