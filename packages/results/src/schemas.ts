import type { ColumnDef } from './arrow.js';

const c = (name: string, kind: ColumnDef['kind'], nullable: boolean, doc: string): ColumnDef => ({ name, kind, nullable, doc });

/** Columns identifying a solver configuration, first in every per-config file. */
const CONFIG_COLUMNS: ColumnDef[] = [
  c('config_id', 'utf8', false, 'readable deterministic config slug, e.g. heun-polynomial-rho7-s10'),
  c('solver', 'utf8', false, 'solver name'),
  c('schedule', 'utf8', false, 'time schedule name'),
  c('steps', 'int32', false, 'number of solver steps S'),
];

/** steps.arrow: one row per (sample, time point). */
export const STEPS_COLUMNS: ColumnDef[] = [
  ...CONFIG_COLUMNS,
  c('sample', 'int32', false, 'sample id (its initial noise depends only on seed, id and dim)'),
  c('step', 'int32', false, 'time point index i, 0..S (S+1 with denoiseToZero)'),
  c('sigma', 'float64', false, 't_i = sigma_i'),
  c('nfe', 'int32', false, 'denoiser evaluations the solver spent to reach x_i'),
  c('x_norm', 'float32', false, '||x_i||'),
  c('d_norm', 'float32', true, '||D(x_i; t_i)|| (null where D was not evaluated)'),
  c('dist_x_final', 'float32', false, '||x_i - x_S||'),
  c('dist_d_final', 'float32', true, '||D_i - x_S||'),
  c('dev_x', 'float32', false, 'distance of x_i from the line through x_0 and x_S'),
  c('dev_d', 'float32', true, 'distance of D_i from the line through D_0 and the last D'),
  c('cos_eps_final', 'float32', true, 'cos(x_i - D_i, x_i - x_S) (null at the last point)'),
  c('turn_angle', 'float32', true, 'angle (radians) between x_{i+1} - x_i and x_i - x_{i-1} (null at the ends)'),
  c('score_dev', 'float32', true, "||D_i - D'_i|| with the compare denoiser (null without compare)"),
  c('kde_gain', 'float64', true, 'log p_{t_i}(x_{i+1}) - log p_{t_i}(x_i), KDE of the training set at bandwidth t_i (null at the last point)'),
  c('jump_err_ref', 'float32', true, 'ODE-Jump error ||D_i - x_S^ref||: output D(x_i) now vs the reference final sample (null without reference)'),
];

/** samples.arrow: one row per sample. `final` is a vec32 of the dataset dim. */
export const SAMPLES_COLUMNS: ColumnDef[] = [
  ...CONFIG_COLUMNS,
  c('sample', 'int32', false, 'sample id'),
  c('nfe_total', 'int32', false, 'denoiser evaluations of the whole solve'),
  c('chord', 'float64', false, '||x_S - x_0||'),
  c('path_length', 'float64', false, 'sum_i ||x_{i+1} - x_i||'),
  c('max_dev_x', 'float64', false, 'max_i dev_x'),
  c('max_dev_ratio', 'float64', false, 'max_dev_x / chord'),
  c('pca_var_1', 'float64', true, 'fraction of centered trajectory variance on the top principal direction'),
  c('pca_var_2', 'float64', true, 'cumulative fraction on the top 2'),
  c('pca_var_3', 'float64', true, 'cumulative fraction on the top 3'),
  c('x_reach_sigma', 'float64', true, 'largest t_i from which on ||x_j - x_S|| <= 0.1 ||x_S|| for all j >= i'),
  c('d_reach_sigma', 'float64', true, 'largest t_i from which on ||D_j - x_S|| <= 0.1 ||x_S|| for all evaluated j >= i'),
  c('min_kde_gain', 'float64', true, 'smallest kde_gain along the trajectory'),
  c('nn_index', 'int32', true, 'index of the training point nearest to x_S'),
  c('nn_dist', 'float64', true, 'distance from x_S to the nearest training point'),
  c('nn2_dist', 'float64', true, 'distance from x_S to the second-nearest training point'),
  c('nn_ratio', 'float64', true, 'nn_dist / nn2_dist (near 0: memorised a training point)'),
  c('final_err_ref', 'float64', true, 'global error ||x_S - x_S^ref|| against the reference config (null without reference)'),
  c('final', 'vec32', false, 'x_S'),
  c('nn_point', 'vec32', true, 'the nearest training point itself (null without a training set or with metrics.nearest off)'),
];

/** states.arrow: kept samples only, full vectors. */
export const STATES_COLUMNS: ColumnDef[] = [
  c('config_id', 'utf8', false, 'config slug'),
  c('sample', 'int32', false, 'sample id (< keepStates)'),
  c('step', 'int32', false, 'time point index'),
  c('sigma', 'float64', false, 't_i'),
  c('x', 'vec32', false, 'x_i'),
  c('denoised', 'vec32', true, 'D(x_i; t_i) (null where not evaluated)'),
];

/** Per-sample metrics summarised per config in summary.arrow. */
export const SUMMARY_METRICS = [
  'chord',
  'path_length',
  'max_dev_x',
  'max_dev_ratio',
  'pca_var_1',
  'pca_var_2',
  'x_reach_sigma',
  'd_reach_sigma',
  'min_kde_gain',
  'nn_dist',
  'nn2_dist',
  'nn_ratio',
  'final_err_ref',
] as const;

/** Per-step metrics summarised per (config, step) in curves.arrow. */
export const CURVE_METRICS = [
  'x_norm',
  'd_norm',
  'dist_x_final',
  'dist_d_final',
  'dev_x',
  'dev_d',
  'cos_eps_final',
  'turn_angle',
  'score_dev',
  'kde_gain',
  'jump_err_ref',
] as const;

/** Statistics written for each summarised metric. */
export const STAT_SUFFIXES = ['mean', 'std', 'p05', 'p50', 'p95'] as const;

const statColumns = (metrics: readonly string[]): ColumnDef[] =>
  metrics.flatMap((m) => STAT_SUFFIXES.map((s) => c(`${m}_${s}`, 'float64', true, `${s} of ${m} (null where no value)`)));

/** summary.arrow: one row per config. */
export const SUMMARY_COLUMNS: ColumnDef[] = [
  ...CONFIG_COLUMNS,
  c('role', 'utf8', false, "'study' or 'reference'"),
  c('nfe', 'int32', false, 'denoiser evaluations per trajectory'),
  c('samples', 'int32', false, 'trajectories aggregated'),
  ...statColumns(SUMMARY_METRICS),
];

/** curves.arrow: one row per (config, step). */
export const CURVES_COLUMNS: ColumnDef[] = [
  ...CONFIG_COLUMNS,
  c('step', 'int32', false, 'time point index'),
  c('sigma', 'float64', false, 't_i'),
  c('nfe', 'int32', false, 'cumulative solver evaluations at this point'),
  c('count', 'int32', false, 'rows aggregated'),
  ...statColumns(CURVE_METRICS),
];
