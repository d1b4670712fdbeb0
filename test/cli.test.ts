import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, readTable, REPO, rows, tempDir, writeSpec } from './helpers.js';
import { alive, childrenOf } from './services.js';

const good = {
  name: 'cli-test',
  samples: 4,
  dataset: { kind: 'two-moons', n: 50 },
  solvers: [{ solver: 'euler', schedule: 'polynomial', steps: [3] }],
};

/** Each broken spec, the field its message must name, and a phrase of the explanation. */
const BAD: [string, object, RegExp][] = [
  ['unknown solver', { ...good, solvers: [{ solver: 'eulr', steps: 3 }] }, /solvers\[0\]\.solver: unknown solver 'eulr'; available: euler, heun, dpm-solver-2/],
  ['negative sigma', { ...good, sigmaMin: -0.1 }, /sigmaMin: .*>0/],
  ['sigmaMin above sigmaMax', { ...good, sigmaMin: 90 }, /sigmaMin: must be below sigmaMax \(80\)/],
  ['dim mismatch between dataset and compare denoiser', { ...good, compare: { kind: 'gaussian', source: 'analytic', dataset: { kind: 'gaussian', dim: 5 } } }, /compare\.dataset: dim 5 does not match the study dataset's dim 2/],
  ['missing dataset file', { ...good, dataset: { kind: 'idx', uri: './no-such-images.gz' } }, /no-such-images\.gz: file not found/],
  ['unknown key', { ...good, sampels: 3 }, /sampels: unknown key/],
  ['bad name', { ...good, name: 'Bad Name' }, /name: must match/],
  ['steps not a positive integer', { ...good, solvers: [{ solver: 'heun', steps: [4, 0] }] }, /solvers\[0\]\.steps/],
  ['unknown dataset kind', { ...good, dataset: { kind: 'cifar' } }, /dataset(\.kind)?: unknown kind/],
  ['gmm denoiser without a mixture', { ...good, denoiser: { kind: 'gmm' } }, /denoiser\.kind: 'gmm' needs a dataset of kind 'gmm'/],
  ['duplicate config', { ...good, solvers: [{ solver: 'euler', steps: [3, 3] }] }, /solvers\[0\]\.steps\[1\]: duplicates config 'euler-polynomial-rho7-s3'/],
  ['custom schedule without sigmas', { ...good, solvers: [{ solver: 'euler', schedule: 'custom' }] }, /solvers\[0\]\.sigmas: schedule 'custom' needs sigmas/],
  ['custom sigmas not decreasing', { ...good, solvers: [{ solver: 'euler', schedule: 'custom', sigmas: [10, 20, 1] }] }, /solvers\[0\]\.sigmas: sigmas must strictly decrease/],
  ['an order option on a solver without one', { ...good, solvers: [{ solver: 'heun', steps: 3, order: 2 }] }, /solvers\[0\]\.order: solver 'heun' has no order option/],
  ['an order out of range', { ...good, solvers: [{ solver: 'unipc', steps: 3, order: 4 }] }, /solvers\[0\]\.order: must be in 1\.\.3 for unipc/],
  ['a variant on the wrong solver', { ...good, solvers: [{ solver: 'euler', steps: 3, variant: 'taylor' }] }, /solvers\[0\]\.variant: only dpm-solver\+\+3m has a variant/],
  ['gits parameters without the gits schedule', { ...good, solvers: [{ solver: 'euler', steps: 3, gits: { warmup: 8 } }] }, /solvers\[0\]\.gits: only read by schedule 'gits'/],
  ['gits steps beyond the teacher grid', { ...good, solvers: [{ solver: 'euler', schedule: 'gits', steps: [3, 12], gits: { teacherSteps: 10 } }] }, /solvers\[0\]\.steps\[1\]: gits needs steps <= gits\.teacherSteps \(10\)/],
  ['thresholding on a solver without data-prediction multistep', { ...good, solvers: [{ solver: 'heun', steps: 3, thresholding: {} }] }, /solvers\[0\]\.thresholding: solver 'heun' has no thresholding option/],
  ['memory budget too small', { ...good, memoryBudgetMB: 0.001 }, /memoryBudgetMB: a job needs about/],
];

describe('trajlab CLI (real child processes)', () => {
  it('validate prints the plan and cost estimate and writes nothing', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, good);
    const res = cli(['validate', spec], { cwd: dir });
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/study\s+cli-test-[0-9a-f]{10}/);
    expect(res.stdout).toMatch(/euler-polynomial-rho7-s3\s+study\s+euler\s+polynomial\s+3\s+3\s+1/);
    expect(res.stdout).toMatch(/denoiser evaluations\s+12 by the solvers/);
    expect(res.stdout).toMatch(/compute\s+~/);
    expect(res.stdout).toMatch(/memory per job\s+~/);
    expect(existsSync(join(dir, 'trajlab-out'))).toBe(false);
  });

  for (const [what, spec, message] of BAD) {
    it(`validate rejects a spec with ${what}: exit 2 naming the field`, () => {
      const dir = tempDir();
      const path = writeSpec(dir, spec);
      const res = cli(['validate', path], { cwd: dir });
      expect(res.status, res.stderr).toBe(2);
      expect(res.stderr).toMatch(/^trajlab: invalid input: /);
      expect(res.stderr).toMatch(message);
      expect(res.stderr).not.toMatch(/\n\s+at /); // no stack trace
    });
  }

  it('validate rejects a missing spec file and bad YAML with exit 2', () => {
    expect(cli(['validate', '/nonexistent/spec.yaml']).status).toBe(2);
    const dir = tempDir();
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: [unclosed');
    const res = cli(['validate', bad]);
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/bad\.yaml: not valid YAML/);
  });

  it('run writes shards, summary and curves, prints where; a second run reuses everything', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, good);
    const res = cli(['run', spec, '--out', join(dir, 'out')], { cwd: dir });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/backend: (wasm|cpu|tensorflow)/);
    const summaryPath = /summary\s+(\S+)/.exec(res.stdout)![1]!;
    expect(existsSync(summaryPath)).toBe(true);
    expect(rows(readTable(summaryPath))[0]!.samples).toBe(4);
    const studyJson = JSON.parse(readFileSync(join(/outputs\s+(\S+)/.exec(res.stdout)![1]!, 'study.json'), 'utf8'));
    expect(studyJson.status).toBe('complete');
    expect(studyJson.backend.name).toMatch(/wasm|cpu|tensorflow/);
    expect(studyJson.data.dataset.contentHash).toMatch(/^[0-9a-f]{64}$/);
    const again = cli(['run', spec, '--out', join(dir, 'out')], { cwd: dir });
    expect(again.status).toBe(0);
    expect(again.stderr).toMatch(/0 shard\(s\) computed, 1 reused/);
  });

  it('show --pivot and --curve print a summary metric by method x NFE and a per-step metric against sigma, from the files', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, { ...good, dataset: { kind: 'gmm', dim: 2, n: 200 }, compare: { kind: 'gmm' }, solvers: [{ solver: 'euler', steps: [3, 6] }, { solver: 'heun', steps: 3 }] });
    const res = cli(['run', spec, '--out', join(dir, 'out'), '--quiet']);
    expect(res.status, res.stderr).toBe(0);
    const id = /study\s+(\S+)/.exec(res.stdout)![1]!;
    const summary = rows(readTable(/summary\s+(\S+)/.exec(res.stdout)![1]!));
    const pivot = cli(['show', id, '--out', join(dir, 'out'), '--pivot', 'max_dev_ratio']);
    expect(pivot.status, pivot.stderr).toBe(0);
    const line = (text: string, start: string) => text.split('\n').find((l) => l.startsWith(start))!.trim().split(/\s{2,}/);
    expect(line(pivot.stdout, 'max_dev_ratio (mean) by NFE')).toEqual(['max_dev_ratio (mean) by NFE', '3', '6']);
    const euler = line(pivot.stdout, 'euler-polynomial-rho7 ');
    for (const [k, nfe] of [[1, 3], [2, 6]] as const) {
      const want = summary.find((r) => r.config_id === `euler-polynomial-rho7-s${nfe}`)!.max_dev_ratio_mean as number;
      expect(Number(euler[k])).toBeCloseTo(want, 4);
    }
    const curve = cli(['show', id, '--out', join(dir, 'out'), '--curve', 'score_dev']);
    expect(curve.status, curve.stderr).toBe(0);
    const curves = rows(readTable(/curves\s+(\S+)/.exec(res.stdout)![1]!)).filter((r) => r.config_id === 'euler-polynomial-rho7-s3');
    for (const r of curves) {
      const cells = line(curve.stdout, `${r.step as number} `);
      expect(Number(cells[1])).toBeCloseTo(r.sigma as number, 3);
      expect(Number(cells[2])).toBeCloseTo(r.score_dev_mean as number, 3);
    }
    const bad = cli(['show', id, '--out', join(dir, 'out'), '--curve', 'nope']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("curves.arrow has no column 'nope_mean'");
    expect(cli(['show', id, '--out', join(dir, 'out'), '--pivot', 'nope']).stderr).toContain("summary.arrow has no column 'nope_mean'");
  });

  it('TRAJLAB_OUT sets the output root; TRAJLAB_BACKEND=cpu is honoured and recorded', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, good);
    const out = join(dir, 'env-out');
    mkdirSync(out);
    const res = cli(['run', spec], { cwd: dir, env: { TRAJLAB_OUT: out, TRAJLAB_BACKEND: 'cpu' } });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/backend: cpu/);
    const studyDir = /outputs\s+(\S+)/.exec(res.stdout)![1]!;
    expect(studyDir.startsWith(out)).toBe(true);
    expect(JSON.parse(readFileSync(join(studyDir, 'study.json'), 'utf8')).backend.name).toBe('cpu');
  });

  it('an unknown TRAJLAB_BACKEND is an input error; distributed commands explain they are not available', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, good);
    const res = cli(['run', spec], { cwd: dir, env: { TRAJLAB_BACKEND: 'cuda' } });
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/TRAJLAB_BACKEND must be one of auto, tensorflow, wasm, cpu; got 'cuda'/);
    // Redis down: a clear message with the URL (password hidden), exit 1, no stack trace.
    const submit = cli(['submit', spec, '--out', join(dir, 'o')], { env: { REDIS_URL: 'redis://trajlab:s3cret@127.0.0.1:1' } });
    expect(submit.status).toBe(1);
    expect(submit.stderr).toMatch(/cannot reach Redis at redis:\/\/trajlab:\*\*\*@127\.0\.0\.1:1 \(REDIS_URL\)/);
    expect(submit.stderr).not.toMatch(/s3cret/);
    expect(submit.stderr).not.toMatch(/\n\s+at /);
    expect(cli(['status', 'x'], { env: { REDIS_URL: 'http://nope' } }).status).toBe(2);
    expect(cli(['frobnicate']).status).toBe(2);
  });

  it('aggregate rebuilds summary.arrow identically from the shards', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, { ...good, samples: 6, shardSize: 2 });
    const res = cli(['run', spec, '--out', join(dir, 'out')], { cwd: dir });
    expect(res.status).toBe(0);
    expect(cli(['run', spec, '--bogus']).status).toBe(2);
    const id = /study\s+(\S+)/.exec(res.stdout)![1]!;
    const summaryPath = /summary\s+(\S+)/.exec(res.stdout)![1]!;
    const before = readFileSync(summaryPath);
    const agg = cli(['aggregate', id, '--out', join(dir, 'out')]);
    expect(agg.status, agg.stderr).toBe(0);
    expect(readFileSync(summaryPath).equals(before)).toBe(true);
  });

  it('TRAJLAB_DATA_ROOT confines dataset files (symbolic links resolved): outside paths are refused with exit 2', () => {
    const root = tempDir();
    const outside = tempDir();
    const header = Buffer.from([0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2]);
    writeFileSync(join(outside, 'x-idx3-ubyte'), Buffer.concat([header, Buffer.alloc(16, 7)]));
    writeFileSync(join(root, 'x-idx3-ubyte'), Buffer.concat([header, Buffer.alloc(16, 7)]));
    symlinkSync(join(outside, 'x-idx3-ubyte'), join(root, 'link-idx3-ubyte'));
    const spec = (uri: string) => writeSpec(root, { ...good, dataset: { kind: 'idx', uri } }, `${uri.replace(/\W/g, '')}.yaml`);
    const env = { TRAJLAB_DATA_ROOT: root };
    expect(cli(['validate', spec('./x-idx3-ubyte')], { env }).status).toBe(0);
    const escape = cli(['validate', spec(join(outside, 'x-idx3-ubyte'))], { env });
    expect(escape.status).toBe(2);
    expect(escape.stderr).toMatch(/dataset\.uri: .* is outside the data root .* \(TRAJLAB_DATA_ROOT\)/);
    expect(cli(['validate', spec('./link-idx3-ubyte')], { env }).stderr).toMatch(/outside the data root/);
    expect(cli(['validate', spec('../' + outside.split('/').pop() + '/x-idx3-ubyte')], { env }).status).toBe(2);
  });

  it('run --workers 3 on a refused spec: exit 2 naming the field, and the shard processes started early write nothing', () => {
    const dir = tempDir();
    const path = writeSpec(dir, { ...good, samples: -1 });
    const res = cli(['run', path, '--out', join(dir, 'out'), '--workers', '3'], { cwd: dir });
    expect(res.status, res.stderr).toBe(2);
    expect(res.stderr).toMatch(/^trajlab: invalid input: .*samples: Too small/);
    expect(existsSync(join(dir, 'out'))).toBe(false);
  });

  it('run --workers 3 on a one-job study runs it here and stops the shard processes it started early', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, good);
    const res = cli(['run', spec, '--out', join(dir, 'out'), '--workers', '3', '--quiet'], { cwd: dir });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/1 job\(s\)/);
    expect(res.stderr).not.toMatch(/running shards in/);
    expect(res.stderr).toMatch(/\(1 shard\(s\) computed, 0 reused\)/);
  });

  it('run --workers 3 runs its shards in the 2 processes it starts first, never more, and none is left afterwards', async () => {
    const dir = tempDir();
    const spec = writeSpec(dir, { ...good, samples: 12, shardSize: 2 });
    const child = spawn(process.execPath, [join(REPO, 'services/coordinator/bin/trajlab.mjs'), 'run', spec, '--out', join(dir, 'out'), '--workers', '3', '--quiet'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const seen = new Set<number>();
    const poll = setInterval(() => childrenOf(child.pid!).forEach((pid) => seen.add(pid)), 25);
    const [code] = (await once(child, 'close')) as [number | null];
    clearInterval(poll);
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/running shards in 3 processes/);
    expect(seen.size).toBe(2);
    for (const pid of seen) expect(alive(pid), `shard process ${pid}`).toBe(false);
  });

  it('aggregate refuses a truncated shard by name and leaves the existing summary untouched', () => {
    const dir = tempDir();
    const spec = writeSpec(dir, { ...good, samples: 4, shardSize: 2 });
    const res = cli(['run', spec, '--out', join(dir, 'out'), '--workers', '1'], { cwd: dir });
    expect(res.status, res.stderr).toBe(0);
    const id = /study\s+(\S+)/.exec(res.stdout)![1]!;
    const summary = /summary\s+(\S+)/.exec(res.stdout)![1]!;
    const before = readFileSync(summary);
    const victim = join(dir, 'out', id, 'shards/euler-polynomial-rho7-s3/000002-000003.steps.arrow');
    writeFileSync(victim, readFileSync(victim).subarray(0, 200));
    const agg = cli(['aggregate', id, '--out', join(dir, 'out')]);
    expect(agg.status).toBe(1);
    expect(agg.stderr).toMatch(/000002-000003\.steps\.arrow: not a complete Arrow IPC file/);
    expect(readFileSync(summary).equals(before)).toBe(true);
  });
});
