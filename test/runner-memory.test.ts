import * as tf from '@tensorflow/tfjs-core';
import { installNativeMatMul, nativeMatMulActive, uninstallNativeMatMul } from '@trajlab/backend';
import { createContext, runShard } from '@trajlab/runner';
import { planStudy, resolveStudyText } from '@trajlab/study';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';

describe('shard runner', () => {
  it('releases every tensor it creates (long studies do not grow device memory)', async () => {
    const { study, data } = resolveStudyText(
      stringify({
        name: 'leak',
        samples: 4,
        dataset: { kind: 'gmm', dim: 3, components: 3, n: 100 },
        compare: { kind: 'gmm' },
        solvers: [
          { solver: 'heun', steps: 4 },
          { solver: 'dpm-solver-2', steps: 3, denoiseToZero: true },
        ],
      }),
      'leak.yaml',
      '.',
    );
    const plan = planStudy(study);
    const ctx = await createContext(study, data, plan);
    for (const config of plan.configs) await runShard(ctx, config, config.shards[0]!);
    const before = tf.memory().numTensors;
    for (const config of plan.configs) await runShard(ctx, config, config.shards[0]!);
    expect(tf.memory().numTensors).toBe(before);
    ctx.dispose();
  });

  it('denoiseToZero adds a final point at sigma 0 reached with one more evaluation', async () => {
    const { study, data } = resolveStudyText(
      stringify({ name: 'dz', samples: 2, dataset: { kind: 'rings', n: 30 }, solvers: [{ solver: 'euler', steps: 3, denoiseToZero: true }] }),
      'dz.yaml',
      '.',
    );
    const plan = planStudy(study);
    expect(plan.configs[0]!.configId).toBe('euler-polynomial-rho7-s3-dz');
    expect(plan.configs[0]!.nfe).toBe(4);
    const ctx = await createContext(study, data, plan);
    const out = await runShard(ctx, plan.configs[0]!, plan.configs[0]!.shards[0]!);
    ctx.dispose();
    const { tableFromIPC } = await import('apache-arrow');
    const steps = tableFromIPC(out.steps).toArray().map((r) => r.toJSON());
    expect(steps.filter((r) => r.sample === 0).map((r) => [r.step, r.sigma, r.nfe])).toEqual([
      [0, 80, 0],
      [1, plan.configs[0]!.sigmas[1], 1],
      [2, plan.configs[0]!.sigmas[2], 2],
      [3, 0.002, 3],
      [4, 0, 4],
    ]);
    // The final point is D(x_S; sigmaMin) of the training set: a training point up to float error.
    const samples = tableFromIPC(out.samples).toArray().map((r) => r.toJSON());
    for (const s of samples) expect(s.nn_dist).toBeLessThan(1e-5);
  });
});

describe('metrics reuse the optimal denoiser\'s distances', () => {
  /** The training set's metric products in one shard and, on the tensor path, the tfjs matMul kernels it ran. */
  async function products(metrics: object): Promise<{ counted: number; kernels: number }> {
    const base = { name: 'reuse', samples: 4, dataset: { kind: 'gmm', dim: 3, components: 3, n: 300 }, solvers: [{ solver: 'euler', steps: 6 }] };
    const { study, data } = resolveStudyText(stringify({ ...base, metrics: { pca: false, ...metrics } }), 'reuse.yaml', '.');
    const plan = planStudy(study);
    const ctx = await createContext(study, data, plan);
    const info = await tf.profile(async () => {
      await runShard(ctx, plan.configs[0]!, plan.configs[0]!.shards[0]!);
    });
    const counted = ctx.trainingSet!.metricProducts;
    ctx.dispose();
    return { counted, kernels: info.kernels.filter((k) => k.name === 'BatchMatMul' || k.name === '_FusedMatMul').length };
  }

  // 6 steps: the KDE gain of each step needs only delta . Y (the logits at x_i are the denoiser's own); the
  // nearest-neighbour search of x_S ranks the logits of the final evaluation.
  it('KDE gain adds one product with the training set per step (not two), nearest neighbours none (tensor path: tfjs kernels counted)', async () => {
    const wasNative = nativeMatMulActive();
    uninstallNativeMatMul();
    try {
      const none = await products({ kde: false, nearest: false });
      const both = await products({ kde: true, nearest: true });
      expect(both.kernels - none.kernels).toBe(6);
      expect([none.counted, both.counted]).toEqual([0, 6]);
    } finally {
      if (wasNative) installNativeMatMul(1);
    }
  });

  it.runIf(nativeMatMulActive())('with native products the same 6, run on the host copy of the points: no tfjs product at all', async () => {
    const none = await products({ kde: false, nearest: false });
    const both = await products({ kde: true, nearest: true });
    expect([none.counted, both.counted]).toEqual([0, 6]);
    expect([none.kernels, both.kernels]).toEqual([0, 0]);
  });
});

describe('numerical faults', () => {
  it('a NaN or Inf during sampling fails the shard naming config, sample, step and sigma; nothing is written', async () => {
    const { runStudyEmbedded } = await import('@trajlab/runner');
    const { existsSync, mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'nan-'));
    // a custom schedule starting at 1e39: x_T = 1e39 z overflows float32 to Inf at the very first point
    writeFileSync(join(dir, 'spec.yaml'), stringify({ name: 'overflow', samples: 2, dataset: { kind: 'rings', n: 20 }, solvers: [{ solver: 'euler', schedule: 'custom', sigmas: [1e39, 1, 0.1] }] }));
    await expect(runStudyEmbedded(join(dir, 'spec.yaml'), { out: join(dir, 'out') })).rejects.toThrow(
      /non-finite x in config euler-custom-[0-9a-f]{6}-s2, sample 0, step 0, sigma 1e\+39/,
    );
    const studyDirs = (await import('node:fs')).readdirSync(join(dir, 'out'));
    expect(existsSync(join(dir, 'out', studyDirs[0]!, 'shards'))).toBe(false);
  });
});
