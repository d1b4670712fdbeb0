import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, readTable, rows, tempDir } from './helpers.js';

// The paper's findings on real data, by running examples/fashion-mnist.yaml exactly as a user would.
// CI installs Debian's dataset-fashion-mnist (.ci/run); elsewhere the test is skipped when the files are absent.
const DATA = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';
const present = existsSync(DATA);
if (!present && process.env.CI) throw new Error(`${DATA} is missing: .ci/run must install dataset-fashion-mnist`);

describe.skipIf(!present)('examples/fashion-mnist.yaml (10k images, optimal denoiser)', () => {
  it('reproduces the paper: quasi-linear sampling, D converges first, samples memorise training images, KDE rises', () => {
    const dir = tempDir();
    const res = cli(['run', 'examples/fashion-mnist.yaml', '--out', join(dir, 'out')]);
    expect(res.status, res.stderr).toBe(0);
    const summary = rows(readTable(/summary\s+(\S+)/.exec(res.stdout)![1]!));
    expect(summary.map((r) => r.config_id)).toEqual(['euler-polynomial-rho7-s20', 'heun-polynomial-rho7-s10']);
    for (const r of summary) {
      expect(r.samples).toBe(64);
      expect(r.nfe).toBe(20);
      // Quasi-linear: the sampling trajectory stays within ~1% of its chord (the paper reports 0.3-0.5% in image space).
      expect(r.max_dev_ratio_p95 as number).toBeLessThan(0.01);
      expect(r.pca_var_1_mean as number).toBeGreaterThan(0.999);
      // The denoising trajectory reaches the final sample at a much larger sigma than the sampling trajectory does.
      expect(r.d_reach_sigma_p50 as number).toBeGreaterThan(5 * (r.x_reach_sigma_p50 as number));
      // Annealed mean shift with the optimal denoiser ends on a training image: nearest << second nearest.
      expect(r.nn_ratio_p95 as number).toBeLessThan(0.05);
      expect(r.nn_dist_p95 as number).toBeLessThan(0.1);
    }
    // Euler with the optimal denoiser never decreases the KDE at bandwidth t (a theorem; Heun is not bound by it).
    expect(summary[0]!.min_kde_gain_p05 as number).toBeGreaterThanOrEqual(0);
    expect(res.stdout).toMatch(/max_dev_ratio p50/);
  });
});
