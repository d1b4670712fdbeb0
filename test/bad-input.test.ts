import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { stringify } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../services/coordinator/src/index.js';
import { GraphBuilder, writeExactGaussianGraphModel } from './graph-model.js';
import { sha256, tempDir } from './helpers.js';

/**
 * The bad-input corpus: every kind of user input a study reads (spec, dataset file, model files) broken in one way per
 * row. Each row runs `trajlab run` into an output directory that already holds a finished study, and must exit with
 * code 2, print a message naming the field and/or file, and leave every byte already written in place.
 * Queue payloads and Arrow shards are covered table-driven in security.test.ts and below (aggregate).
 */

const base = { name: 'bad', samples: 2, shardSize: 2, dataset: { kind: 'gaussian', dim: 2, n: 50 }, solvers: [{ solver: 'euler', steps: 2 }] };

interface Case {
  name: string;
  /** Writes the case's files into `dir` and returns the spec path (relative paths in specs are relative to it). */
  setup: (dir: string) => string;
  /** Substrings the error output must contain ({dir} is replaced by the case directory). */
  expect: string[];
  env?: Record<string, string>;
}

const spec = (dir: string, s: object | string) => {
  const path = join(dir, 'spec.yaml');
  writeFileSync(path, typeof s === 'string' ? s : stringify(s));
  return path;
};
const with_ = (patch: object) => (dir: string) => spec(dir, { ...base, ...patch });

/** An IDX header: magic 00 00, type, rank, big-endian dimensions. */
function idxHeader(type: number, dims: number[]): Buffer {
  const b = Buffer.alloc(4 + 4 * dims.length);
  b[2] = type;
  b[3] = dims.length;
  dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
  return b;
}
const idxSpec = (file: string) => ({ ...base, dataset: { kind: 'idx', uri: `./${file}` } });
const ubyteImages = (n: number) => Buffer.concat([idxHeader(0x08, [n, 2, 2]), Buffer.alloc(n * 4, 100)]);

/** A valid exact-Gaussian graph model in <dir>/model, for the model rows to break. */
function model(dir: string, edit?: (json: Record<string, unknown>) => void): string {
  const m = join(dir, 'model');
  writeExactGaussianGraphModel(m, [0, 0], 1, 0.5, 'edm');
  if (edit) {
    const json = JSON.parse(readFileSync(join(m, 'model.json'), 'utf8'));
    edit(json);
    writeFileSync(join(m, 'model.json'), JSON.stringify(json));
  }
  return m;
}
const modelSpec = (extra: object = {}) => ({ ...base, denoiser: { kind: 'tfjs', uri: './model', parameterization: 'edm', ...extra } });

const cases: Case[] = [
  // study specs
  { name: 'YAML syntax error', setup: (d) => spec(d, 'name: [oops\n'), expect: ['{dir}/spec.yaml', 'not valid YAML/JSON'] },
  { name: 'spec is a list, not a mapping', setup: (d) => spec(d, '- a\n- b\n'), expect: ['must be a mapping'] },
  { name: 'spec file missing', setup: (d) => join(d, 'nope.yaml'), expect: ['{dir}/nope.yaml', 'spec file not found'] },
  { name: 'unknown top-level key', setup: with_({ colour: 'red' }), expect: ['colour: unknown key'] },
  { name: 'study name with spaces', setup: with_({ name: 'Bad Name' }), expect: ['name: must match'] },
  { name: 'zero samples', setup: with_({ samples: 0 }), expect: ['samples:'] },
  { name: 'negative seed', setup: with_({ seed: -1 }), expect: ['seed:'] },
  { name: 'negative keepStates', setup: with_({ keepStates: -1 }), expect: ['keepStates:'] },
  { name: 'sigmaMin above sigmaMax', setup: with_({ sigmaMin: 90 }), expect: ['sigmaMin: must be below sigmaMax (80)'] },
  { name: 'unknown solver', setup: with_({ solvers: [{ solver: 'rk45', steps: 2 }] }), expect: ["solvers[0].solver: unknown solver 'rk45'"] },
  { name: 'unknown schedule', setup: with_({ solvers: [{ solver: 'euler', schedule: 'cosine', steps: 2 }] }), expect: ["solvers[0].schedule: unknown schedule 'cosine'"] },
  { name: 'custom sigmas not decreasing', setup: with_({ solvers: [{ solver: 'euler', schedule: 'custom', sigmas: [1, 2, 0.5] }] }), expect: ['solvers[0].sigmas:'] },
  { name: 'custom sigmas and a different step count', setup: with_({ solvers: [{ solver: 'euler', schedule: 'custom', sigmas: [3, 1, 0.5], steps: 5 }] }), expect: ['solvers[0].steps: custom sigmas define 2 steps'] },
  { name: 'order out of range', setup: with_({ solvers: [{ solver: 'ipndm', steps: 5, order: 9 }] }), expect: ['solvers[0].order: must be in'] },
  { name: 'order on a solver without one', setup: with_({ solvers: [{ solver: 'euler', steps: 5, order: 2 }] }), expect: ["solvers[0].order: solver 'euler' has no order option"] },
  { name: 'the same config twice', setup: with_({ solvers: [{ solver: 'euler', steps: [4] }, { solver: 'euler', steps: 4 }] }), expect: ["duplicates config 'euler-polynomial-rho7-s4'"] },
  { name: 'gits with more steps than its teacher grid', setup: with_({ solvers: [{ solver: 'euler', schedule: 'gits', steps: 8, gits: { teacherSteps: 6 } }] }), expect: ['gits needs steps <= gits.teacherSteps (6)'] },
  { name: 'unknown denoiser kind', setup: with_({ denoiser: { kind: 'unet' } }), expect: ['denoiser.kind: unknown kind; expected one of optimal, gaussian, gmm, tfjs'] },
  { name: 'gmm denoiser on non-mixture data', setup: with_({ denoiser: { kind: 'gmm' } }), expect: ["denoiser.kind: 'gmm' needs a dataset of kind 'gmm'"] },
  { name: 'denoiser dataset of another dimension', setup: with_({ denoiser: { kind: 'optimal', dataset: { kind: 'gaussian', dim: 3 } } }), expect: ["denoiser.dataset: dim 3 does not match the study dataset's dim 2"] },
  { name: 'unknown dataset kind', setup: with_({ dataset: { kind: 'cifar100' } }), expect: ['dataset.kind: unknown kind'] },
  { name: 'memory budget below one sample', setup: with_({ memoryBudgetMB: 0.001 }), expect: ['memoryBudgetMB: a job needs about'] },
  // dataset files
  { name: 'IDX file missing', setup: (d) => spec(d, idxSpec('missing-idx3-ubyte')), expect: ['{dir}/missing-idx3-ubyte: file not found'] },
  {
    name: 'IDX file truncated',
    setup: (d) => (writeFileSync(join(d, 't-idx3-ubyte'), ubyteImages(5).subarray(0, 20)), spec(d, idxSpec('t-idx3-ubyte'))),
    expect: ['{dir}/t-idx3-ubyte: truncated: header promises 5x2x2 ubyte'],
  },
  { name: 'IDX wrong magic', setup: (d) => (writeFileSync(join(d, 'm-idx3-ubyte'), Buffer.from('PK\u0003\u0004 not idx at all')), spec(d, idxSpec('m-idx3-ubyte'))), expect: ['{dir}/m-idx3-ubyte: not an IDX file: magic bytes are 50 4b'] },
  {
    name: 'IDX float data with a NaN',
    setup: (d) => {
      const data = Buffer.alloc(4 * 4 * 3);
      for (let i = 0; i < 12; i++) data.writeFloatBE(i === 7 ? Number.NaN : 0.5, 4 * i);
      writeFileSync(join(d, 'nan-idx2-float'), Buffer.concat([idxHeader(0x0d, [3, 4]), data]));
      return spec(d, { ...base, dataset: { kind: 'idx', uri: './nan-idx2-float' } });
    },
    expect: ['{dir}/nan-idx2-float: non-finite value NaN at item 1, component 3'],
  },
  {
    name: 'IDX float data with an Inf',
    setup: (d) => {
      const data = Buffer.alloc(4 * 2 * 3);
      for (let i = 0; i < 6; i++) data.writeFloatBE(i === 4 ? Number.POSITIVE_INFINITY : 0.5, 4 * i);
      writeFileSync(join(d, 'inf-idx2-float'), Buffer.concat([idxHeader(0x0d, [3, 2]), data]));
      return spec(d, { ...base, dataset: { kind: 'idx', uri: './inf-idx2-float' } });
    },
    expect: ['{dir}/inf-idx2-float: non-finite value Infinity at item 2, component 0'],
  },
  { name: 'IDX gzip stream corrupt', setup: (d) => (writeFileSync(join(d, 'c-idx3-ubyte.gz'), gzipSync(ubyteImages(3)).subarray(0, 30)), spec(d, idxSpec('c-idx3-ubyte.gz'))), expect: ['{dir}/c-idx3-ubyte.gz: gzip data is corrupt or truncated'] },
  { name: 'IDX with zero items', setup: (d) => (writeFileSync(join(d, 'z-idx3-ubyte'), idxHeader(0x08, [0, 2, 2])), spec(d, idxSpec('z-idx3-ubyte'))), expect: ['{dir}/z-idx3-ubyte: IDX dimensions 0x2x2 hold no data'] },
  { name: 'IDX of another dimension for the denoiser', setup: (d) => (writeFileSync(join(d, 'i-idx3-ubyte'), ubyteImages(3)), spec(d, { ...base, denoiser: { kind: 'optimal', dataset: { kind: 'idx', uri: './i-idx3-ubyte' } } })), expect: ["denoiser.dataset: dim 4 does not match the study dataset's dim 2"] },
  { name: 'dataset over http://', setup: with_({ dataset: { kind: 'idx', uri: 'http://example.com/x-idx3-ubyte' } }), expect: ["dataset.uri: unsupported URI scheme 'http://'"] },
  {
    name: 'dataset outside the data root (through a symlink)',
    setup: (d) => {
      mkdirSync(join(d, 'root'));
      mkdirSync(join(d, 'elsewhere'));
      writeFileSync(join(d, 'elsewhere', 'x-idx3-ubyte'), ubyteImages(3));
      symlinkSync(join(d, 'elsewhere', 'x-idx3-ubyte'), join(d, 'root', 'x-idx3-ubyte'));
      return spec(d, { ...base, dataset: { kind: 'idx', uri: './root/x-idx3-ubyte' } });
    },
    env: { TRAJLAB_DATA_ROOT: '{dir}/root' },
    expect: ['dataset.uri: {dir}/root/x-idx3-ubyte is outside the data root'],
  },
  // model files
  { name: 'model directory missing', setup: (d) => spec(d, modelSpec()), expect: ['denoiser.uri: {dir}/model: model directory not found'] },
  { name: 'model.json missing', setup: (d) => (mkdirSync(join(d, 'model')), spec(d, modelSpec())), expect: ['{dir}/model/model.json: model.json not found'] },
  { name: 'model.json not JSON', setup: (d) => (model(d), writeFileSync(join(d, 'model', 'model.json'), '{"modelTopology": '), spec(d, modelSpec())), expect: ['{dir}/model/model.json: not valid JSON'] },
  { name: 'model.json without a weights manifest', setup: (d) => (model(d, (j) => delete j.weightsManifest), spec(d, modelSpec())), expect: ['{dir}/model/model.json: not a TF.js model.json (no weightsManifest)'] },
  {
    name: 'weight shard path escaping the model directory',
    setup: (d) => (model(d, (j) => ((j.weightsManifest as { paths: string[] }[])[0]!.paths = ['../../etc/passwd'])), spec(d, modelSpec())),
    expect: ["{dir}/model/model.json: weight shard path '../../etc/passwd' must be a plain path relative to model.json"],
  },
  { name: 'weight shard missing', setup: (d) => (model(d, (j) => ((j.weightsManifest as { paths: string[] }[])[0]!.paths = ['gone.bin'])), spec(d, modelSpec())), expect: ['{dir}/model/gone.bin: weight shard named by {dir}/model/model.json is missing'] },
  {
    name: 'weight shard truncated',
    setup: (d) => {
      const m = model(d);
      writeFileSync(join(m, 'group1-shard1of1.bin'), readFileSync(join(m, 'group1-shard1of1.bin')).subarray(0, 6));
      return spec(d, modelSpec());
    },
    expect: ['{dir}/model/model.json: weight shards hold 6 bytes', 'truncated or mismatched shard'],
  },
  { name: 'model input of another size', setup: (d) => (model(d), spec(d, { ...modelSpec(), dataset: { kind: 'gaussian', dim: 5 } })), expect: ["{dir}/model/model.json: the model's data input 'x' has shape [batch, 2], which does not fit the study data (vectors of dim 5)"] },
  {
    name: 'graph model with two outputs',
    setup: (d) => (model(d, (j) => (j.modelTopology as { node: object[] }).node.push({ name: 'dangling', op: 'Identity', input: ['x'], attr: { T: { type: 'DT_FLOAT' } } })), spec(d, modelSpec())),
    expect: ['{dir}/model/model.json: a denoiser model has one output; this one has 2 (Identity, dangling)'],
  },
  {
    name: 'model output not shaped like its input',
    setup: (d) => {
      // x [B, 2] times a [2, 3] matrix plus the noise level: [B, 3]
      const g = new GraphBuilder();
      const out = g.op('AddV2', g.op('MatMul', g.placeholder('x', [-1, 2]), g.constant('w', [2, 3], [1, 0, 0, 0, 1, 0])), g.placeholder('noise', [-1, 1]));
      g.write(join(d, 'model'), out);
      return spec(d, modelSpec());
    },
    expect: ['{dir}/model/model.json: the model returns shape [1, 3] for an input of shape [1, 2]'],
  },
  { name: 'no parameterization and no trajlab-model.json', setup: (d) => (model(d), spec(d, { ...base, denoiser: { kind: 'tfjs', uri: './model' } })), expect: ['denoiser.parameterization: required: {dir}/model/model.json has no trajlab-model.json'] },
  { name: 'unknown parameterization', setup: (d) => (model(d), spec(d, modelSpec({ parameterization: 'score' }))), expect: ['denoiser.parameterization:'] },
  { name: 'trajlab-model.json with a bad field', setup: (d) => (writeFileSync(join(model(d), 'trajlab-model.json'), JSON.stringify({ format: 'trajlab-model', version: 1, parameterization: 'score' })), spec(d, modelSpec())), expect: ['{dir}/model/trajlab-model.json: parameterization:'] },
  { name: 'model uri with an unknown scheme', setup: (d) => spec(d, modelSpec({ uri: 'gs://bucket/model' })), expect: ["denoiser.uri: unsupported URI scheme 'gs://'"] },
];

/** sha256 of every file under a directory, by relative path. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = sha256(readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

/** Runs the CLI in this process (same code path as the binary), capturing its output. */
async function trajlab(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const write = process.stderr.write.bind(process.stderr);
  const writeOut = process.stdout.write.bind(process.stdout);
  let stderr = '';
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return { code: await main(argv), stderr };
  } finally {
    process.stderr.write = write;
    process.stdout.write = writeOut;
    for (const k of Object.keys(env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

describe('bad-input corpus: exit code 2, a message naming the field or file, nothing already written touched', () => {
  const root = tempDir('trajlab-bad-input-');
  const out = join(root, 'out');
  let before: Record<string, string>;
  beforeAll(async () => {
    const ok = await trajlab(['run', spec(root, base), '--out', out, '--quiet', '--workers', '1']);
    expect(ok.code, ok.stderr).toBe(0);
    before = snapshot(out);
    expect(Object.keys(before).length).toBeGreaterThan(5);
  });

  it('has at least 40 rows', () => expect(cases.length).toBeGreaterThanOrEqual(40));

  it.each(cases.map((c, i) => [`${String(i + 1).padStart(2, '0')} ${c.name}`, c] as const))('%s', async (_, c) => {
    const dir = join(root, `case-${cases.indexOf(c)}`);
    mkdirSync(dir);
    const specPath = c.setup(dir);
    const env = Object.fromEntries(Object.entries(c.env ?? {}).map(([k, v]) => [k, v.replaceAll('{dir}', dir)]));
    const res = await trajlab(['run', specPath, '--out', out, '--quiet', '--workers', '1'], env);
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toMatch(/(^|\n)trajlab: invalid input: /);
    for (const s of c.expect) expect(res.stderr).toContain(s.replaceAll('{dir}', dir));
    expect(res.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(snapshot(out)).toEqual(before);
  });
});

describe('corrupted shards met by the aggregator: refused by name, the existing summary untouched', () => {
  const root = tempDir('trajlab-bad-shards-');
  const out = join(root, 'out');
  let studyId = '';
  const shardDir = () => join(out, studyId, 'shards', 'euler-polynomial-rho7-s2');
  beforeAll(async () => {
    const res = await trajlab(['run', spec(root, { ...base, samples: 4 }), '--out', out, '--quiet', '--workers', '1']);
    expect(res.code, res.stderr).toBe(0);
    studyId = readdirSync(out).find((d) => d.startsWith('bad-'))!;
  });

  const rows: { name: string; file: string; corrupt: (bytes: Buffer, dir: string) => Buffer | null; expect: string }[] = [
    { name: 'truncated steps file', file: '000002-000003.steps.arrow', corrupt: (b) => b.subarray(0, 300), expect: 'not a complete Arrow IPC file' },
    { name: 'zero-byte samples file', file: '000000-000001.samples.arrow', corrupt: () => Buffer.alloc(0), expect: 'not a complete Arrow IPC file' },
    { name: 'random bytes in place of a steps file', file: '000000-000001.steps.arrow', corrupt: (b) => Buffer.from(b.map((_, i) => (i * 7919) % 251)), expect: 'not a complete Arrow IPC file' },
    { name: 'a steps file where a samples file belongs', file: '000002-000003.samples.arrow', corrupt: (_, d) => readFileSync(join(d, '000002-000003.steps.arrow')), expect: "missing column 'chord'" },
    { name: 'a shard file deleted', file: '000000-000001.samples.arrow', corrupt: () => null, expect: 'object not found' },
  ];

  it.each(rows.map((r) => [r.name, r] as const))('%s', async (_, r) => {
    const summary = join(out, studyId, 'summary', 'summary.arrow');
    const summaryBefore = sha256(readFileSync(summary));
    const victim = join(shardDir(), r.file);
    const original = readFileSync(victim);
    const broken = r.corrupt(original, shardDir());
    if (broken === null) (await import('node:fs')).rmSync(victim);
    else writeFileSync(victim, broken);
    try {
      const res = await trajlab(['aggregate', studyId, '--out', out]);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain(r.file);
      expect(res.stderr).toContain(r.expect);
      expect(res.stderr).not.toMatch(/\n\s+at /);
      expect(sha256(readFileSync(summary))).toBe(summaryBefore);
    } finally {
      writeFileSync(victim, original);
    }
    expect((await trajlab(['aggregate', studyId, '--out', out])).code).toBe(0);
    expect(sha256(readFileSync(summary))).toBe(summaryBefore);
  });
});
