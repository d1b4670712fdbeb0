import { initialNoise, polynomialSigmas } from '@trajlab/core';
import { gaussianDataset } from '@trajlab/datasets';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTable, rows, runSpec } from './helpers.js';

// End-to-end closed forms: spec -> plan -> denoiser -> solver -> metrics -> Arrow, checked against exact answers.

const gaussianData = { kind: 'gaussian', dim: 4, rank: 2, n: 50, meanScale: 1, scale: 2, decay: 1, seed: 3 } as const;

/** Exact PF-ODE flow of N(mu, U diag(l) U^T): x_t = mu + U diag(sqrt((l + t^2)/(l + T^2))) U^T (x_T - mu) + (t/T) P_perp (x_T - mu). */
function exactGaussianEnd(sample: number, t: number, T: number): number[] {
  const d = gaussianDataset(gaussianData);
  const g = d.analytic;
  if (g?.kind !== 'gaussian') throw new Error('expected gaussian');
  const x = initialNoise(0, sample, 4, T);
  const diff = Array.from(x, (v, a) => v - g.mean[a]!);
  const coords = Array.from({ length: g.rank }, (_, k) => diff.reduce((s, v, a) => s + v * g.basis[a * g.rank + k]!, 0));
  const inRange = Array.from({ length: 4 }, (_, a) => coords.reduce((s, c, k) => s + c * g.basis[a * g.rank + k]!, 0));
  return Array.from({ length: 4 }, (_, a) => {
    let v = g.mean[a]! + (t / T) * (diff[a]! - inRange[a]!);
    for (let k = 0; k < g.rank; k++) v += g.basis[a * g.rank + k]! * Math.sqrt((g.eigenvalues[k]! + t * t) / (g.eigenvalues[k]! + T * T)) * coords[k]!;
    return v;
  });
}

function finals(res: { studyDir: string }, configId: string, shard: string): number[][] {
  return rows(readTable(join(res.studyDir, 'shards', configId, `${shard}.samples.arrow`))).map((r) => r.final as number[]);
}

describe('closed forms through the whole pipeline', () => {
  it('Gaussian data: Heun with many steps lands on the exact flow; its error shrinks ~4x when steps double', async () => {
    const res = await runSpec({
      name: 'gauss-flow',
      samples: 6,
      shardSize: 6,
      dataset: gaussianData,
      denoiser: { kind: 'gaussian', source: 'analytic' },
      solvers: [{ solver: 'heun', schedule: 'polynomial', steps: [16, 32, 256] }],
      metrics: { kde: false, nearest: false },
      keepStates: 0,
    });
    const err = (steps: number) => {
      const got = finals(res, `heun-polynomial-rho7-s${steps}`, '000000-000005');
      return Math.max(...got.flatMap((row, s) => row.map((v, a) => Math.abs(v - exactGaussianEnd(s, 0.002, 80)[a]!))));
    };
    expect(err(256)).toBeLessThan(2e-3);
    const ratio = err(16) / err(32);
    expect(ratio).toBeGreaterThan(3);
    expect(ratio).toBeLessThan(5.5);
  });

  it('isotropic Gaussian data gives straight trajectories: dev_x ~ 0', async () => {
    const res = await runSpec({
      name: 'iso',
      samples: 8,
      dataset: { kind: 'gaussian', dim: 6, n: 20, decay: 0, scale: 0.5, meanScale: 1, seed: 1 },
      denoiser: { kind: 'gaussian', source: 'analytic' },
      solvers: [{ solver: 'euler', schedule: 'polynomial', steps: 12 }],
      metrics: { kde: false, nearest: false },
    });
    const s = rows(readTable(join(res.studyDir, 'shards/euler-polynomial-rho7-s12/000000-000007.samples.arrow')));
    for (const r of s) expect(r.max_dev_ratio as number).toBeLessThan(1e-5);
    for (const r of s) expect(r.pca_var_1 as number).toBeGreaterThan(1 - 1e-8);
  });

  it('a one-point dataset makes Euler exact (the optimal denoiser is constant)', async () => {
    const res = await runSpec({
      name: 'one-point',
      samples: 3,
      dataset: { kind: 'gaussian', dim: 3, n: 1, seed: 9 },
      denoiser: { kind: 'optimal' },
      solvers: [{ solver: 'euler', schedule: 'logsnr', steps: 7 }],
    });
    const y = Array.from(gaussianDataset({ kind: 'gaussian', dim: 3, n: 1, seed: 9 } as never).points);
    const got = finals(res, 'euler-logsnr-s7', '000000-000002');
    got.forEach((row, s) => {
      const x0 = initialNoise(0, s, 3, 80);
      row.forEach((v, a) => expect(Math.abs(v - (y[a]! + (0.002 / 80) * (x0[a]! - y[a]!)))).toBeLessThan(1e-5));
    });
  });

  it('optimal-denoiser sampling is annealed mean shift: ends within 1e-2 of a training point, KDE never decreases (Euler)', async () => {
    const res = await runSpec({
      name: 'mean-shift',
      samples: 24,
      shardSize: 12,
      // The exact flow of a single point leaves x at (sigmaMin / sigmaMax) ||x_T - y|| from it: about 7e-4 here.
      sigmaMin: 0.0005,
      dataset: { kind: 'two-moons', n: 64, seed: 2 },
      denoiser: { kind: 'optimal' },
      solvers: [{ solver: 'euler', schedule: 'polynomial', steps: 40 }],
    });
    for (const shard of ['000000-000011', '000012-000023']) {
      const samples = rows(readTable(join(res.studyDir, `shards/euler-polynomial-rho7-s40/${shard}.samples.arrow`)));
      for (const r of samples) expect(r.nn_dist as number).toBeLessThan(1e-2);
      // Converged onto one training point (memorisation), not stuck between two.
      for (const r of samples) expect(r.nn_ratio as number).toBeLessThan(0.5);
      const steps = rows(readTable(join(res.studyDir, `shards/euler-polynomial-rho7-s40/${shard}.steps.arrow`)));
      const gains = steps.filter((r) => r.kde_gain !== null).map((r) => r.kde_gain as number);
      expect(gains).toHaveLength(24 / 2 * 40);
      for (const g of gains) expect(g).toBeGreaterThanOrEqual(0);
      // The last point has no next point: kde_gain is null there.
      expect(steps.filter((r) => r.step === 40).every((r) => r.kde_gain === null)).toBe(true);
    }
  });

  it('schedules in the shards equal the contract examples', async () => {
    const res = await runSpec({
      name: 'sched',
      samples: 1,
      dataset: { kind: 'rings', n: 30 },
      solvers: [{ solver: 'euler', schedule: 'polynomial', steps: 6 }, { solver: 'euler', schedule: 'logsnr', steps: 6 }],
      metrics: { kde: false, nearest: false, pca: false },
    });
    const sig = (id: string) => rows(readTable(join(res.studyDir, `shards/${id}/000000-000000.steps.arrow`))).map((r) => r.sigma as number);
    expect(sig('euler-polynomial-rho7-s6')).toEqual(polynomialSigmas(6, 0.002, 80));
    [80, 13.6798, 2.3392, 0.4, 0.0684, 0.0117, 0.002].forEach((v, i) => expect(sig('euler-logsnr-s6')[i]).toBeCloseTo(v, 4));
  });
});
