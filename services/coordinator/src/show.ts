import { readIpcFile } from '@trajlab/results';
import type { ObjectStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';
import { table } from './format.js';

/** A metric name that the study's files do not have (user input: exit code 2). */
export class UnknownMetricError extends Error {
  override name = 'UnknownMetricError';
}

const fmt = (v: unknown, digits = 3): string => (typeof v === 'number' && Number.isFinite(v) ? (Math.abs(v) >= 1e-2 || v === 0 ? v.toFixed(digits) : v.toExponential(2)) : '-');

/**
 * The headline numbers of a study, one row per config, from summary.arrow: quasi-linearity (max_dev_ratio), when the
 * denoising output and the sample reach the final sample (sigma), and memorisation (nearest training points).
 */
export async function summaryText(store: ObjectStore, studyId: string): Promise<string> {
  const key = studyKeys.summary(studyId);
  const t = readIpcFile(await store.get(key), store.locate(key));
  const rows = t.toArray().map((r) => r.toJSON() as Record<string, unknown>);
  return table(
    ['config', 'NFE', 'n', 'max_dev_ratio p50 [p05, p95]', 'pca_var_1', 'x_reach_sigma', 'd_reach_sigma', 'nn_dist p50', 'nn2_dist p50', 'nn_ratio p50', 'min_kde_gain p05', 'final_err_ref mean'],
    rows.map((r) => [
      r.config_id as string,
      r.nfe as number,
      r.samples as number,
      `${fmt(r.max_dev_ratio_p50, 4)} [${fmt(r.max_dev_ratio_p05, 4)}, ${fmt(r.max_dev_ratio_p95, 4)}]`,
      fmt(r.pca_var_1_mean, 5),
      fmt(r.x_reach_sigma_p50),
      fmt(r.d_reach_sigma_p50),
      fmt(r.nn_dist_p50),
      fmt(r.nn2_dist_p50),
      fmt(r.nn_ratio_p50),
      fmt(r.min_kde_gain_p05),
      fmt(r.final_err_ref_mean),
    ]),
  );
}

/**
 * One summary metric's mean as a method x NFE table: a method is the config id without its step count (solver,
 * schedule, options), a column per NFE. This is how solvers are compared at equal cost.
 */
export async function pivotText(store: ObjectStore, studyId: string, metric: string): Promise<string> {
  const key = studyKeys.summary(studyId);
  const t = readIpcFile(await store.get(key), store.locate(key));
  const column = `${metric}_mean`;
  if (!t.getChild(column)) throw new UnknownMetricError(`summary.arrow has no column '${column}' (pivot takes a summarised metric such as final_err_ref)`);
  const rows = t
    .toArray()
    .map((r) => r.toJSON() as Record<string, unknown>)
    .filter((r) => r.role !== 'reference');
  const method = (r: Record<string, unknown>) => (r.config_id as string).replace(/-s\d+(?=(-|$))/, '');
  const nfes = [...new Set(rows.map((r) => r.nfe as number))].sort((a, b) => a - b);
  const methods = [...new Set(rows.map(method))];
  return table(
    [`${metric} (mean) by NFE`, ...nfes.map(String)],
    methods.map((m) => [m, ...nfes.map((n) => fmt(rows.find((r) => method(r) === m && r.nfe === n)?.[column], 4))]),
  );
}

/**
 * One per-step metric against sigma, from curves.arrow: a row per time point (sigma), a column per config with the
 * metric's mean (and p50) over the samples, e.g. score_dev along the trajectories.
 */
export async function curveText(store: ObjectStore, studyId: string, metric: string): Promise<string> {
  const key = studyKeys.curves(studyId);
  const t = readIpcFile(await store.get(key), store.locate(key));
  const column = `${metric}_mean`;
  if (!t.getChild(column)) throw new UnknownMetricError(`curves.arrow has no column '${column}' (curve takes a per-step metric such as score_dev or dist_d_final)`);
  const rows = t.toArray().map((r) => r.toJSON() as Record<string, unknown>);
  const configs = [...new Set(rows.map((r) => r.config_id as string))];
  const steps = [...new Set(rows.map((r) => r.step as number))].sort((a, b) => a - b);
  return table(
    ['step', ...configs.flatMap((c) => [`${c} sigma`, `${metric} mean`, 'p50'])],
    steps.map((s) => [
      s,
      ...configs.flatMap((c) => {
        const r = rows.find((x) => x.config_id === c && x.step === s);
        return r ? [fmt(r.sigma, 4), fmt(r[column], 4), fmt(r[`${metric}_p50`], 4)] : ['', '', ''];
      }),
    ]),
  );
}
