export * from './schedules.js';
export * from './rng.js';
export * from './linalg.js';
export * from './solvers/types.js';
export * from './solvers/registry.js';
export { euler } from './solvers/euler.js';
export { heun } from './solvers/heun.js';
export { dpmSolver2 } from './solvers/dpm2.js';
export * from './metrics/trajectory.js';
