import * as tf from '@tensorflow/tfjs-core';
import { buildSigmas, gitsCostMatrix, gitsDynamicProgram, initialNoiseBatch, SOLVERS } from '@trajlab/core';
import { canonicalJson, type PlannedConfig } from '@trajlab/study';
import type { StudyContext } from './context.js';

/** Warm-up sample ids start here, far from study sample ids, so warm-up noise never repeats a sample's noise. */
export const GITS_WARMUP_FIRST_ID = 0x80000000;

/** What a GITS schedule was computed from and what it chose, recorded in study.json. */
export interface GitsRecord {
  configId: string;
  teacherSigmas: number[];
  /** Indices into teacherSigmas of the chosen time points. */
  indices: number[];
  sigmas: number[];
  /** Discounted cost of the chosen path and of the teacher's own uniform-index path of the same length. */
  cost: number;
}

/**
 * Computes the sigmas of every gits config in place: teacher trajectories from `warmup` seeded noises on the fine grid
 * (one batch, so the result does not depend on sharding), the cost matrix of Euler jumps, then the dynamic program per
 * step count. Configs sharing gits settings share one teacher run.
 */
export async function computeGitsSchedules(ctx: StudyContext, configs: PlannedConfig[]): Promise<GitsRecord[]> {
  const { spec } = ctx.study;
  const dim = ctx.dataset.dim;
  const groups = new Map<string, PlannedConfig[]>();
  for (const c of configs) if (c.gits) groups.set(canonicalJson(c.gits), [...(groups.get(canonicalJson(c.gits)) ?? []), c]);
  const records: GitsRecord[] = [];
  for (const group of groups.values()) {
    const g = group[0]!.gits!;
    const teacherSigmas = buildSigmas(g.teacherSchedule, { steps: g.teacherSteps, sigmaMin: spec.sigmaMin, sigmaMax: spec.sigmaMax, rho: g.teacherRho });
    const N = teacherSigmas.length;
    const W = g.warmup;
    const xs = new Float32Array(W * N * dim);
    const ds = new Float32Array(W * N * dim);
    const x0 = tf.tensor2d(initialNoiseBatch(g.seed, GITS_WARMUP_FIRST_ID, W, dim, spec.sigmaMax), [W, dim]);
    const final = await SOLVERS[g.teacher as keyof typeof SOLVERS].run(ctx.denoiser.denoise, x0, teacherSigmas, {}, (e) => {
      if (e.i === N - 1) return;
      const own = e.denoised ? null : ctx.denoiser.denoise(e.x, e.sigma);
      const d = tf.tidy(() => tf.div(tf.sub(e.x, e.denoised ?? own!), e.sigma));
      const xHost = e.x.dataSync();
      const dHost = d.dataSync();
      tf.dispose([d, ...(own ? [own] : [])]);
      for (let r = 0; r < W; r++) {
        xs.set(xHost.subarray(r * dim, (r + 1) * dim), (r * N + e.i) * dim);
        ds.set(dHost.subarray(r * dim, (r + 1) * dim), (r * N + e.i) * dim);
      }
    });
    const last = final.dataSync();
    for (let r = 0; r < W; r++) xs.set(last.subarray(r * dim, (r + 1) * dim), (r * N + N - 1) * dim);
    tf.dispose([x0, final]);
    const cost = gitsCostMatrix(xs, ds, W, teacherSigmas, dim);
    for (const c of group) {
      const indices = gitsDynamicProgram(cost, N, c.steps, g.gamma);
      c.sigmas = indices.map((i) => teacherSigmas[i]!);
      let total = 0;
      indices.forEach((p, m) => {
        if (m + 1 < indices.length) total += g.gamma ** m * cost[p * N + indices[m + 1]!]!;
      });
      records.push({ configId: c.configId, teacherSigmas, indices, sigmas: c.sigmas, cost: total });
    }
  }
  return records;
}
