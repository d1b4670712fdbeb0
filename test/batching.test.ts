import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { installNativeMatMul, nativeMatMulActive, uninstallNativeMatMul } from '@trajlab/backend';
import { runStudyEmbedded, shardsPerBatch } from '@trajlab/runner';
import { BATCH_ROWS, planStudy, resolveStudyText } from '@trajlab/study';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { arrowFiles, cliAsync, fileSha256 as sha, tempDir, writeSpec } from './helpers.js';

// The optimal denoiser over a mixture's points, a gmm denoiser to compare with, every metric (the spec's defaults),
// kept states across the first two shards, a reference config, and a last shard shorter than the others.
const spec = {
  name: 'batching',
  seed: 7,
  samples: 16,
  shardSize: 3,
  dataset: { kind: 'gmm', dim: 3, components: 4, n: 200, seed: 1 },
  denoiser: { kind: 'optimal' },
  compare: { kind: 'gmm' },
  solvers: [
    { solver: 'heun', steps: 5 },
    { solver: 'dpm-solver++2m', steps: 6 },
  ],
  reference: { solver: 'heun', steps: 10 },
  keepStates: 5,
};

const plan = () => {
  const { study } = resolveStudyText(stringify(spec), 'batching.yaml', '.');
  return { study, plan: planStudy(study) };
};

/** Runs `path` in this process with TRAJLAB_SHARD_BATCH = `batch`; returns the run and the shards that reported progress within a batch. */
async function runWith(path: string, out: string, batch: string) {
  const before = process.env.TRAJLAB_SHARD_BATCH;
  process.env.TRAJLAB_SHARD_BATCH = batch;
  const computing = new Set<string>();
  try {
    const res = await runStudyEmbedded(path, { out, onProgress: (p) => p.shardFraction < 1 && computing.add(`${p.configId}/${p.shard}`) });
    return { res, computing };
  } finally {
    if (before === undefined) delete process.env.TRAJLAB_SHARD_BATCH;
    else process.env.TRAJLAB_SHARD_BATCH = before;
  }
}

describe('shards computed in batches (native row-stable products)', () => {
  it('the plan allows up to BATCH_ROWS samples a batch within memoryBudgetMB; TRAJLAB_SHARD_BATCH caps it, and a bad value is refused by name', () => {
    const { study, plan: p } = plan();
    expect(p.shardsPerBatch).toBe(Math.floor(BATCH_ROWS / 3));
    expect(shardsPerBatch(study, p, { TRAJLAB_SHARD_BATCH: 'off' })).toBe(1);
    expect(shardsPerBatch(study, p, { TRAJLAB_SHARD_BATCH: '4' })).toBe(nativeMatMulActive() ? 4 : 1);
    expect(() => shardsPerBatch(study, p, { TRAJLAB_SHARD_BATCH: 'many' })).toThrow(/TRAJLAB_SHARD_BATCH must be auto, off or a positive integer.*'many'/);
    expect(() => shardsPerBatch(study, p, { TRAJLAB_SHARD_BATCH: '0' })).toThrow(/TRAJLAB_SHARD_BATCH/);
    // a budget that holds one shard of 64 but not two: no batch of two
    const fmnistLike = { ...spec, samples: 256, shardSize: 64, dataset: { kind: 'gaussian', dim: 784, n: 2000, rank: 8, seed: 1 }, compare: undefined, reference: undefined };
    const big = resolveStudyText(stringify(fmnistLike), 'b.yaml', '.').study;
    expect(planStudy(big).shardsPerBatch).toBe(2);
    const oneShard = planStudy(big).totals.jobMemoryBytes / 2 ** 20;
    const tight = resolveStudyText(stringify({ ...fmnistLike, memoryBudgetMB: oneShard * 1.01 }), 't.yaml', '.').study;
    expect(planStudy(tight).shardSize).toBe(64);
    expect(planStudy(tight).shardsPerBatch).toBe(1);
  });

  it('only where each row is computed apart from the others: not with wasm\'s own products, nor with certified pruning', () => {
    const { study, plan: p } = plan();
    const wasNative = nativeMatMulActive();
    uninstallNativeMatMul();
    try {
      expect(shardsPerBatch(study, p, {})).toBe(1);
    } finally {
      if (wasNative) installNativeMatMul(1);
    }
    const pruned = resolveStudyText(stringify({ ...spec, compare: undefined, denoiser: { kind: 'optimal', pruning: { rank: 2 } } }), 'p.yaml', '.').study;
    expect(shardsPerBatch(pruned, planStudy(pruned), {})).toBe(1);
  });

  it.runIf(nativeMatMulActive())('write the same bytes as shard by shard, in one process and in two (trajlab run --workers 2)', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, spec);
    const { study, plan: p } = plan();
    expect(shardsPerBatch(study, p, {})).toBeGreaterThan(1);
    const single = await runWith(path, join(dir, 'single'), 'off');
    const batched = await runWith(path, join(dir, 'batched'), 'auto');
    const capped = await runWith(path, join(dir, 'capped'), '2');
    const shards = p.configs.reduce((n, c) => n + c.shards.length, 0);
    // shard by shard, every shard reports its own progress; in batches only each batch's first shard does
    expect(single.computing.size).toBe(shards);
    expect(batched.computing.size).toBe(p.configs.length);
    expect(capped.computing.size).toBe(p.configs.reduce((n, c) => n + Math.ceil(c.shards.length / 2), 0));
    const two = await cliAsync(['run', path, '--out', join(dir, 'two'), '--workers', '2', '--quiet']);
    expect(two.status, two.stderr).toBe(0);
    const id = single.res.studyId;
    const files = arrowFiles(join(dir, 'single', id));
    expect(files.length).toBe(3 * 6 * 2 + 3 * 2 + 2);
    for (const out of ['batched', 'capped', 'two']) {
      expect(arrowFiles(join(dir, out, id))).toEqual(files);
      for (const f of files) expect(sha(join(dir, out, id, f)), `${out}/${f}`).toBe(sha(join(dir, 'single', id, f)));
    }
    expect(existsSync(join(dir, 'batched', id, 'summary', 'report.html'))).toBe(true);
  });

  it.runIf(nativeMatMulActive())('UniPC, a multistep solver with the final jump to sigma 0, AFS and a GITS schedule write the same bytes in batches as shard by shard', async () => {
    const dir = tempDir();
    const zoo = {
      name: 'batching-zoo',
      samples: 10,
      shardSize: 3,
      dataset: { kind: 'gmm', dim: 4, components: 3, n: 300, seed: 2 },
      denoiser: { kind: 'gmm' },
      solvers: [
        { solver: 'unipc', steps: 6 },
        { solver: 'dpm-solver++3m', steps: 6, denoiseToZero: true },
        { solver: 'ipndm', afs: true, steps: 7 },
        { solver: 'euler', schedule: 'gits', steps: 6 },
      ],
      reference: { solver: 'heun', steps: 20 },
      keepStates: 4,
    };
    const path = writeSpec(dir, zoo);
    const single = await runWith(path, join(dir, 'single'), 'off');
    const batched = await runWith(path, join(dir, 'batched'), 'auto');
    expect(batched.computing.size).toBe(5);
    const id = single.res.studyId;
    const files = arrowFiles(join(dir, 'single', id));
    expect(files.length).toBe(5 * 4 * 2 + 2 * 5 + 2);
    expect(arrowFiles(join(dir, 'batched', id))).toEqual(files);
    for (const f of files) expect(sha(join(dir, 'batched', id, f)), f).toBe(sha(join(dir, 'single', id, f)));
  });

  it('a bad TRAJLAB_SHARD_BATCH stops trajlab run before it writes anything, naming the variable', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, spec);
    const res = await cliAsync(['run', path, '--out', join(dir, 'out'), '--quiet'], { env: { ...process.env, TRAJLAB_SHARD_BATCH: 'lots' } });
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/TRAJLAB_SHARD_BATCH must be auto, off or a positive integer/);
    expect(res.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });
});
