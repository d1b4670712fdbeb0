import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTable, rows, runSpec } from './helpers.js';

const shardRows = (dir: string, id: string, shard: string, table: 'steps' | 'samples') => rows(readTable(join(dir, 'shards', id, `${shard}.${table}.arrow`)));

describe('the solver zoo through the pipeline', () => {
  it('AFS saves one evaluation; D at x_0 is then a metric evaluation; option suffixes name the configs', async () => {
    const res = await runSpec({
      name: 'afs',
      samples: 3,
      dataset: { kind: 'gmm', dim: 2, components: 3, n: 60 },
      solvers: [
        { solver: 'heun', steps: 5, afs: true },
        { solver: 'unipc', steps: 6, order: 2, afs: true },
        { solver: 'dpm-solver++3m', steps: 6, variant: 'taylor', lowerOrderFinal: false },
        { solver: 'euler', schedule: 'time-uniform', steps: 5 },
        { solver: 'ipndm', steps: 6, order: 3 },
      ],
    });
    const ids = res.plan.configs.map((c) => c.configId);
    expect(ids).toEqual([
      'heun-polynomial-rho7-s5-afs',
      'unipc-polynomial-rho7-s6-o2-afs',
      'dpm-solver++3m-polynomial-rho7-s6-taylor-lof0',
      'euler-time-uniform-rho1-s5',
      'ipndm-polynomial-rho7-s6-o3',
    ]);
    expect(res.plan.configs.map((c) => c.nfe)).toEqual([9, 5, 6, 5, 6]);
    const heun = shardRows(res.studyDir, ids[0]!, '000000-000002', 'steps').filter((r) => r.sample === 0);
    expect(heun.map((r) => r.nfe)).toEqual([0, 1, 3, 5, 7, 9]);
    expect(heun.every((r) => r.d_norm !== null)).toBe(true);
    const samples = shardRows(res.studyDir, ids[0]!, '000000-000002', 'samples');
    expect(samples.every((r) => r.nfe_total === 9)).toBe(true);
    // UniPC: D filled at its corrected points for the metrics (fillDenoised), NFE as the solver spent it.
    const uni = shardRows(res.studyDir, ids[1]!, '000000-000002', 'steps').filter((r) => r.sample === 0);
    expect(uni.map((r) => r.nfe)).toEqual([0, 1, 2, 3, 4, 5, 5]);
    expect(uni.every((r) => r.d_norm !== null)).toBe(true);
  });

  it('without fillDenoised, points where the solver did not evaluate D at x_i have null D metrics', async () => {
    const res = await runSpec({
      name: 'nofill',
      samples: 2,
      dataset: { kind: 'rings', n: 40 },
      solvers: [{ solver: 'unipc', steps: 5 }],
      metrics: { fillDenoised: false },
    });
    const steps = shardRows(res.studyDir, 'unipc-polynomial-rho7-s5', '000000-000001', 'steps').filter((r) => r.sample === 0);
    expect(steps.map((r) => r.d_norm === null)).toEqual([false, true, true, true, true, true]);
  });

  it('dynamic thresholding (dpm-solver++) leaves predictions inside [-1, 1] alone with maxValue 1, changes others', async () => {
    // Data with |y| < 1 everywhere: D, a convex combination of training points, stays inside [-1, 1].
    const base = { name: 'thr', samples: 4, dataset: { kind: 'gaussian', dim: 2, n: 80, scale: 0.01, decay: 0 } };
    const plain = await runSpec({ ...base, solvers: [{ solver: 'dpm-solver++2m', steps: 6 }] });
    const loose = await runSpec({ ...base, solvers: [{ solver: 'dpm-solver++2m', steps: 6, thresholding: { ratio: 0.995, maxValue: 1 } }] });
    const tight = await runSpec({ ...base, solvers: [{ solver: 'dpm-solver++2m', steps: 6, thresholding: { ratio: 0.5, maxValue: 0.1 } }] });
    const finals = (r: { studyDir: string; plan: { configs: { configId: string }[] } }) =>
      shardRows(r.studyDir, r.plan.configs[0]!.configId, '000000-000003', 'samples').map((s) => s.final);
    expect(loose.plan.configs[0]!.configId).toBe('dpm-solver++2m-polynomial-rho7-s6-thr0p995');
    expect(finals(loose)).toEqual(finals(plain));
    expect(finals(tight)).not.toEqual(finals(plain));
  });

  it('GITS: the schedule is chosen on the teacher grid, deterministic, recorded in study.json and the shards', async () => {
    const spec = {
      name: 'gits',
      samples: 4,
      dataset: { kind: 'gmm', dim: 2, components: 4, n: 100 },
      solvers: [{ solver: 'euler', schedule: 'gits', steps: [4, 6], gits: { teacherSteps: 24, warmup: 32, gamma: 1.1 } }],
    };
    const a = await runSpec(spec);
    const b = await runSpec({ ...spec, shardSize: 1 });
    const doc = JSON.parse(readFileSync(join(a.studyDir, 'study.json'), 'utf8'));
    expect(doc.gits).toHaveLength(2);
    for (const g of doc.gits) {
      expect(g.sigmas[0]).toBe(80);
      expect(g.sigmas[g.sigmas.length - 1]).toBe(0.002);
      for (let i = 1; i < g.sigmas.length; i++) expect(g.sigmas[i]).toBeLessThan(g.sigmas[i - 1]);
      expect(g.indices.map((i: number) => g.teacherSigmas[i])).toEqual(g.sigmas);
    }
    const id = a.plan.configs[0]!.configId;
    expect(id).toMatch(/^euler-gits-[0-9a-f]{6}-s4$/);
    const sig = shardRows(a.studyDir, id, '000000-000003', 'steps').filter((r) => r.sample === 0).map((r) => r.sigma);
    expect(sig).toEqual(doc.gits[0].sigmas);
    const docB = JSON.parse(readFileSync(join(b.studyDir, 'study.json'), 'utf8'));
    expect(docB.gits.map((g: { sigmas: number[] }) => g.sigmas)).toEqual(doc.gits.map((g: { sigmas: number[] }) => g.sigmas));
  });

  it('ODE-Jump and global error against the reference config; more steps, smaller error', async () => {
    const res = await runSpec({
      name: 'jump',
      samples: 8,
      shardSize: 4,
      dataset: { kind: 'gmm', dim: 3, components: 4, n: 200 },
      solvers: [{ solver: 'euler', steps: [5, 40] }],
      reference: { solver: 'heun', steps: 100 },
    });
    const summary = rows(readTable(res.summary));
    const byId = Object.fromEntries(summary.map((r) => [r.config_id, r]));
    expect(byId['ref-heun-polynomial-rho7-s100']!.final_err_ref_mean).toBeNull();
    expect(byId['euler-polynomial-rho7-s40']!.final_err_ref_mean as number).toBeLessThan(byId['euler-polynomial-rho7-s5']!.final_err_ref_mean as number);
    const steps = shardRows(res.studyDir, 'euler-polynomial-rho7-s5', '000004-000007', 'steps');
    const samples = shardRows(res.studyDir, 'euler-polynomial-rho7-s5', '000004-000007', 'samples');
    // The reference's own finals: their distance to this config's finals is final_err_ref.
    const ref = shardRows(res.studyDir, 'ref-heun-polynomial-rho7-s100', '000004-000007', 'samples');
    samples.forEach((s, r) => {
      const a = s.final as number[];
      const b = ref[r]!.final as number[];
      expect(s.final_err_ref as number).toBeCloseTo(Math.hypot(...a.map((v, k) => v - b[k]!)), 5);
    });
    expect(steps.every((r) => r.jump_err_ref !== null)).toBe(true);
    const curves = rows(readTable(res.curves)).filter((r) => r.config_id === 'euler-polynomial-rho7-s5');
    expect(curves.map((r) => r.nfe)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(curves.every((r) => typeof r.jump_err_ref_mean === 'number')).toBe(true);
  });
});
