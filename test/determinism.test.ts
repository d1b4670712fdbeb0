import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveStudyText } from '@trajlab/study';
import { runStudyEmbedded } from '@trajlab/runner';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { arrowFiles, cliAsync, fileSha256 as sha, readTable, rows, runSpec, tempDir, writeSpec } from './helpers.js';

const base = {
  name: 'determinism',
  seed: 42,
  samples: 16,
  dataset: { kind: 'gmm', dim: 3, components: 4, n: 200, seed: 1 },
  compare: { kind: 'gmm' },
  solvers: [
    { solver: 'heun', schedule: 'polynomial', steps: 6 },
    { solver: 'dpm-solver-2', schedule: 'logsnr', steps: 5 },
  ],
  keepStates: 5,
};

/** All rows of one table kind for a config, in sample order, across shards. */
function allRows(studyDir: string, configId: string, table: 'samples' | 'steps' | 'states') {
  const dir = join(studyDir, 'shards', configId);
  return readdirSync(dir)
    .filter((f) => f.endsWith(`.${table}.arrow`))
    .sort()
    .flatMap((f) => rows(readTable(join(dir, f))));
}

describe('determinism', () => {
  it('shardSize 4 and 16 give identical sample, step and state rows', async () => {
    // shard by shard (TRAJLAB_SHARD_BATCH=off), so that the denoiser sees 4 rows at a time against 16
    process.env.TRAJLAB_SHARD_BATCH = 'off';
    const a = await runSpec({ ...base, shardSize: 4 }).finally(() => delete process.env.TRAJLAB_SHARD_BATCH);
    const b = await runSpec({ ...base, shardSize: 16 });
    expect(readdirSync(join(a.studyDir, 'shards/heun-polynomial-rho7-s6')).filter((f) => f.endsWith('.samples.arrow'))).toHaveLength(4);
    for (const configId of ['heun-polynomial-rho7-s6', 'dpm-solver-2-logsnr-s5']) {
      for (const table of ['samples', 'steps', 'states'] as const) {
        const ra = allRows(a.studyDir, configId, table);
        const rb = allRows(b.studyDir, configId, table);
        expect(ra.length).toBeGreaterThan(0);
        expect(ra).toEqual(rb);
      }
    }
    // The summaries agree too (shards are streamed in sample order whatever their size).
    expect(rows(readTable(a.summary))).toEqual(rows(readTable(b.summary)));
    expect(rows(readTable(a.curves))).toEqual(rows(readTable(b.curves)));
  });

  it('the same spec gives the same study id and byte-identical shards; any change gives a new id', async () => {
    const text = stringify({ ...base, shardSize: 8 });
    const id1 = resolveStudyText(text, 'a.yaml', '.').study.studyId;
    const id2 = resolveStudyText(stringify({ shardSize: 8, ...base }), 'b.yaml', '.').study.studyId;
    expect(id1).toBe(id2);
    expect(id1).toMatch(/^determinism-[0-9a-f]{10}$/);
    expect(resolveStudyText(stringify({ ...base, shardSize: 8, seed: 43 }), 'c.yaml', '.').study.studyId).not.toBe(id1);
    expect(resolveStudyText(stringify({ ...base, shardSize: 8, dataset: { ...base.dataset, seed: 2 } }), 'd.yaml', '.').study.studyId).not.toBe(id1);
    const a = await runSpec({ ...base, shardSize: 8 });
    const b = await runSpec({ ...base, shardSize: 8 });
    expect(a.studyId).toBe(id1);
    const files = readdirSync(join(a.studyDir, 'shards/heun-polynomial-rho7-s6'));
    for (const f of files) expect(sha(join(a.studyDir, 'shards/heun-polynomial-rho7-s6', f))).toBe(sha(join(b.studyDir, 'shards/heun-polynomial-rho7-s6', f)));
    expect(sha(a.summary)).toBe(sha(b.summary));
  });

  it('a second run reuses complete shards and recomputes a damaged one, with identical results', async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, { ...base, shardSize: 8 });
    const out = join(dir, 'out');
    const first = await runStudyEmbedded(spec, { out });
    expect(first.shardsComputed).toBe(4);
    const victim = join(first.studyDir, 'shards/dpm-solver-2-logsnr-s5/000008-000015.steps.arrow');
    const good = sha(victim);
    const summary = sha(first.summary);
    writeFileSync(victim, readFileSync(victim).subarray(0, 100));
    const second = await runStudyEmbedded(spec, { out });
    expect(second.shardsReused).toBe(3);
    expect(second.shardsComputed).toBe(1);
    expect(sha(victim)).toBe(good);
    expect(sha(second.summary)).toBe(summary);
  });

  it('trajlab run --workers 2 writes the same bytes as --workers 1 (shards in separate processes)', async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, { ...base, shardSize: 4, reference: { solver: 'heun', steps: 12 } });
    const one = await cliAsync(['run', spec, '--out', join(dir, 'one'), '--workers', '1', '--quiet']);
    const two = await cliAsync(['run', spec, '--out', join(dir, 'two'), '--workers', '2', '--quiet']);
    expect(one.status, one.stderr).toBe(0);
    expect(two.status, two.stderr).toBe(0);
    expect(two.stderr).toMatch(/running shards in 2 processes/);
    const id = /study\s+(\S+)/.exec(one.stdout)![1]!;
    const files = arrowFiles(join(dir, 'one', id));
    expect(arrowFiles(join(dir, 'two', id))).toEqual(files);
    expect(files.length).toBe(3 * 4 * 2 + 3 * 2 + 2);
    for (const f of files) expect(sha(join(dir, 'two', id, f)), f).toBe(sha(join(dir, 'one', id, f)));
  });
});

const FMNIST = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';

// CI installs the Debian package; elsewhere this part is skipped without it
describe.skipIf(!existsSync(FMNIST) && !process.env.CI)('determinism of the optimal denoiser on real data (native matrix products where built)', () => {
  const spec = {
    name: 'determinism-optimal',
    seed: 3,
    samples: 12,
    shardSize: 3,
    dataset: { kind: 'idx', uri: FMNIST, limit: 600 },
    solvers: [{ solver: 'heun', steps: 6 }],
  };

  it('--workers 2 writes the same bytes as --workers 1, and wasm\'s own matMul (TRAJLAB_BLAS=off) agrees within float32 rounding', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, spec);
    const one = await cliAsync(['run', path, '--out', join(dir, 'one'), '--workers', '1', '--quiet']);
    const two = await cliAsync(['run', path, '--out', join(dir, 'two'), '--workers', '2', '--quiet']);
    const wasm = await cliAsync(['run', path, '--out', join(dir, 'wasm'), '--workers', '1', '--quiet'], { env: { ...process.env, TRAJLAB_BLAS: 'off' } });
    for (const r of [one, two, wasm]) expect(r.status, r.stderr).toBe(0);
    expect(wasm.stderr).toMatch(/matrix products: wasm \(its own kernel\) \[TRAJLAB_BLAS=off\]/);
    if (process.env.CI) expect(one.stderr).toMatch(/matrix products: native row-stable sgemm \((avx512|avx2)\), 1 thread/);
    const id = /study\s+(\S+)/.exec(one.stdout)![1]!;
    const files = arrowFiles(join(dir, 'one', id));
    expect(files.length).toBeGreaterThan(8);
    for (const f of files) expect(sha(join(dir, 'two', id, f)), f).toBe(sha(join(dir, 'one', id, f)));
    // the runs above compute the 4 shards as one batch of 12 rows (TRAJLAB_SHARD_BATCH); shard by shard, the same bytes
    const single = await cliAsync(['run', path, '--out', join(dir, 'single'), '--workers', '1', '--quiet'], { env: { ...process.env, TRAJLAB_SHARD_BATCH: 'off' } });
    expect(single.status, single.stderr).toBe(0);
    for (const f of files) expect(sha(join(dir, 'single', id, f)), `shard by shard: ${f}`).toBe(sha(join(dir, 'one', id, f)));
    // every instruction set computes the same fma chains, whatever the thread count: the portable C path (and AVX2
    // where the default is AVX-512), with 2 threads per product, write the same bytes
    const best = /native row-stable sgemm \((\w+)\)/.exec(one.stderr)?.[1];
    for (const isa of best === 'avx512' ? ['avx2', 'scalar'] : best === 'avx2' ? ['scalar'] : []) {
      const env = { ...process.env, TRAJLAB_BLAS: 'on', TRAJLAB_BLAS_ISA: isa, TRAJLAB_BLAS_THREADS: '2' };
      const r = await cliAsync(['run', path, '--out', join(dir, isa), '--workers', '2', '--quiet'], { env });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(new RegExp(`matrix products: native row-stable sgemm \\(${isa}\\), 2 threads`));
      for (const f of files) expect(sha(join(dir, isa, id, f)), `${isa}: ${f}`).toBe(sha(join(dir, 'one', id, f)));
    }
    // same samples, same nearest training points; distances agree to float32 rounding through 12 evaluations
    const a = allRows(join(dir, 'one', id), 'heun-polynomial-rho7-s6', 'samples');
    const b = allRows(join(dir, 'wasm', id), 'heun-polynomial-rho7-s6', 'samples');
    expect(b.map((r) => r.nn_index)).toEqual(a.map((r) => r.nn_index));
    for (const [i, r] of a.entries()) {
      for (const col of ['chord', 'path_length', 'max_dev_x', 'nn_dist']) {
        expect(Math.abs((b[i]![col] as number) - (r[col] as number)), `sample ${i} ${col}`).toBeLessThan(1e-3 * Math.max(1, Math.abs(r[col] as number)));
      }
    }
  });
});
