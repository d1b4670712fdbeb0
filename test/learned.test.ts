import * as tf from '@tensorflow/tfjs-core';
import { buildSigmas, heun, initialNoiseBatch } from '@trajlab/core';
import { gmmDataset, loadIdxFile, type Dataset } from '@trajlab/datasets';
import { networkDenoiser, PARAMETERIZATIONS, TrainingSet } from '@trajlab/denoisers';
import { buildNetwork, ensureConvGradient, evaluateLoss, networkFromLayersModel, trainDenoiser, type TrainOptions } from '@trajlab/models/training';
import { FsStore, openStore } from '@trajlab/storage';
import { loadDataset } from '@trajlab/study';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeExactGaussianGraphModel } from './graph-model.js';
import { cli, cliAsync, readTable, rows, runSpec, sha256, tempDir, writeSpec } from './helpers.js';
import { startS3, type TestS3 } from './s3-server.js';

const gaussianData = { kind: 'gaussian', dim: 4, n: 200, decay: 0, scale: 0.6, meanScale: 1, seed: 3 } as const;

/** samples.arrow rows of a finished study, sorted by config and sample. */
function finals(studyDir: string, configId: string): number[][] {
  const t = readTable(join(studyDir, 'shards', configId, '000000-000015.samples.arrow'));
  return rows(t).map((r) => r.final as number[]);
}

describe('tfjs denoisers: exact Gaussian graph models in every parameterization', () => {
  const dir = tempDir('trajlab-learned-');
  const analytic = loadDataset(gaussianData as never, dir, 'dataset').analytic as Extract<Dataset['analytic'], { kind: 'gaussian' }>;
  const base = { samples: 16, shardSize: 16, dataset: gaussianData, solvers: [{ solver: 'heun', steps: 8 }, { solver: 'dpm-solver++2m', steps: 10 }] };
  let reference: string;
  beforeAll(async () => {
    reference = (await runSpec({ name: 'gauss-analytic', ...base, denoiser: { kind: 'gaussian', source: 'analytic' } }, tempDir())).studyDir;
  });

  it.each(PARAMETERIZATIONS)('%s: a graph model file of the exact denoiser reproduces the analytic trajectories through the study pipeline', async (param) => {
    // all eigenvalues equal (decay 0): N(mu, v I)
    expect(new Set(analytic.eigenvalues).size).toBe(1);
    writeExactGaussianGraphModel(join(dir, `gauss-${param}`), analytic.mean, analytic.eigenvalues[0]!, 0.5, param);
    const res = await runSpec({ name: `gauss-${param}`, ...base, denoiser: { kind: 'tfjs', uri: `../gauss-${param}`, parameterization: param, sigmaData: 0.5 } }, mkdtempSync(join(dir, 'run-')));
    for (const configId of ['heun-polynomial-rho7-s8', 'dpm-solver++2m-polynomial-rho7-s10']) {
      const want = finals(reference, configId);
      const got = finals(res.studyDir, configId);
      expect(got.length).toBe(16);
      for (let i = 0; i < want.length; i++) {
        for (let k = 0; k < 4; k++) expect(Math.abs(got[i]![k]! - want[i]![k]!)).toBeLessThan(2e-4 * Math.max(1, Math.abs(want[i]![k]!)));
      }
      const steps = (d: string) => rows(readTable(join(d, 'shards', configId, '000000-000015.steps.arrow'))).map((r) => r.d_norm as number | null);
      const dWant = steps(reference);
      steps(res.studyDir).forEach((v, i) => (v === null ? expect(dWant[i]).toBeNull() : expect(Math.abs(v - dWant[i]!)).toBeLessThan(2e-4 * Math.max(1, dWant[i]!))));
    }
    const study = JSON.parse(readFileSync(join(res.studyDir, 'study.json'), 'utf8'));
    expect(study.models.denoiser.format).toBe('graph');
    expect(study.models.denoiser.contentHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a model that does not fit the data, a missing or truncated shard, or a missing parameterization are input errors naming the file', () => {
    writeExactGaussianGraphModel(join(dir, 'errs'), analytic.mean, 0.6, 0.5, 'edm');
    const spec = (denoiser: object, dataset: object = gaussianData) => writeSpec(dir, { name: 'errs', samples: 2, dataset, denoiser, solvers: [{ solver: 'euler', steps: 2 }] }, 'errs.yaml');
    const ok = cli(['validate', spec({ kind: 'tfjs', uri: './errs', parameterization: 'edm' })]);
    expect(ok.status, ok.stderr).toBe(0);

    const wrongDim = cli(['validate', spec({ kind: 'tfjs', uri: './errs', parameterization: 'edm' }, { ...gaussianData, dim: 3 })]);
    expect(wrongDim.status).toBe(2);
    expect(wrongDim.stderr).toContain(`denoiser.uri: ${join(dir, 'errs', 'model.json')}: the model's data input 'x' has shape [batch, 4], which does not fit the study data (vectors of dim 3)`);

    const noParam = cli(['validate', spec({ kind: 'tfjs', uri: './errs' })]);
    expect(noParam.status).toBe(2);
    expect(noParam.stderr).toContain('denoiser.parameterization: required');

    const noNoise = cli(['validate', spec({ kind: 'tfjs', uri: './errs', parameterization: 'edm', noiseInput: 'none' })]);
    expect(noNoise.status).toBe(2);
    expect(noNoise.stderr).toContain("denoiser.noiseInput: is none but");

    const shard = join(dir, 'errs', 'group1-shard1of1.bin');
    truncateSync(shard, 8);
    const truncated = cli(['validate', spec({ kind: 'tfjs', uri: './errs', parameterization: 'edm' })]);
    expect(truncated.status).toBe(2);
    expect(truncated.stderr).toContain('truncated or mismatched shard');
    expect(truncated.stderr).toContain('group1-shard1of1.bin');

    rmSync(shard);
    const missing = cli(['validate', spec({ kind: 'tfjs', uri: './errs', parameterization: 'edm' })]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain(`${shard}: weight shard named by ${join(dir, 'errs', 'model.json')} is missing`);

    const noModel = cli(['validate', spec({ kind: 'tfjs', uri: './nowhere', parameterization: 'edm' })]);
    expect(noModel.status).toBe(2);
    expect(noModel.stderr).toContain(`${join(dir, 'nowhere')}: model directory not found`);
  });
});

/** Mean distance from each sample to its nearest training point. */
function meanNearest(samples: number[][], data: Dataset): number {
  let total = 0;
  for (const s of samples) {
    let best = Infinity;
    for (let j = 0; j < data.n; j++) {
      let d = 0;
      for (let k = 0; k < data.dim; k++) d += (s[k]! - data.points[j * data.dim + k]!) ** 2;
      best = Math.min(best, d);
    }
    total += Math.sqrt(best);
  }
  return total / samples.length;
}

async function sample(denoise: (x: tf.Tensor2D, s: number) => tf.Tensor2D, dim: number, count: number, sigmaMax: number): Promise<number[][]> {
  const x0 = tf.tensor2d(initialNoiseBatch(5, 0, count, dim, sigmaMax), [count, dim]);
  const x = await heun(denoise, x0, buildSigmas('polynomial', { steps: 18, sigmaMin: 0.002, sigmaMax, rho: 7 }), {}, () => {});
  const out = x.arraySync();
  tf.dispose([x0, x]);
  return out;
}

describe('trajlab train', () => {
  const toy = gmmDataset({ dim: 2, components: 4, n: 400, spread: 3, std: 0.2, seed: 2 } as never);
  const options: TrainOptions = {
    architecture: { arch: 'mlp', width: 128, depth: 3, embed: 32 },
    parameterization: 'edm',
    noiseInput: 'edm',
    sigmaData: 'auto',
    pMean: -1.2,
    pStd: 1.2,
    steps: 1000,
    batchSize: 128,
    learningRate: 3e-3,
    ema: 0.99,
    logEvery: 50,
    checkpointEvery: 0,
    seed: 0,
  };

  it('lowers the EDM loss and gives samples much closer to the data than the untrained network', async () => {
    const dir = tempDir('trajlab-train-');
    const logged: number[] = [];
    const res = await trainDenoiser(toy, options, new FsStore(dir), { onLog: (p) => logged.push(p.loss) });
    const sd = res.metadata.sigmaData;
    expect(sd).toBeGreaterThan(1);
    expect(res.metadata.training.lossHistory.map(([s]) => s)).toEqual(Array.from({ length: 20 }, (_, i) => 50 * (i + 1)));
    const untrained = networkDenoiser(networkFromLayersModel(buildNetwork(options.architecture, 2, undefined, 0)), { parameterization: 'edm', sigmaData: sd, noiseInput: 'edm', layout: 'flat', dim: 2 });
    const { loadNetwork, inspectLocalModel } = await import('@trajlab/models');
    const hash = inspectLocalModel(dir).contentHash;
    const net = await loadNetwork(dir, 'model.json', hash);
    // loaded once per process: a second study (or the compare denoiser) gets the same network
    expect(await loadNetwork(dir, 'model.json', hash)).toBe(net);
    const trained = networkDenoiser(net, { parameterization: 'edm', sigmaData: sd, noiseInput: 'edm', layout: 'flat', dim: 2 });
    const lossBefore = evaluateLoss(untrained.denoise, toy, options, sd);
    const lossAfter = evaluateLoss(trained.denoise, toy, options, sd);
    const optimal = new TrainingSet(toy.points, toy.n, toy.dim);
    const lossOptimal = evaluateLoss((x, s) => optimal.denoise(x, s), toy, options, sd);
    // the optimal denoiser over the training set is the floor a network can only approach; training must close most
    // of the gap to it (most of the EDM loss at small sigma is irreducible noise)
    expect(lossOptimal).toBeLessThan(lossAfter);
    expect(lossAfter - lossOptimal).toBeLessThan(0.3 * (lossBefore - lossOptimal));
    const before = meanNearest(await sample(untrained.denoise, 2, 64, 80), toy);
    const after = meanNearest(await sample(trained.denoise, 2, 64, 80), toy);
    expect(after).toBeLessThan(0.5 * before);
    untrained.dispose();
    optimal.dispose();
  });

  it('a U-Net trains on images on this backend (Conv2D filter gradients included) and lowers the loss', async () => {
    // 8x8 one-channel images: a bright square at one of four places
    const dir = tempDir('trajlab-unet-');
    const n = 32;
    const pixels = Buffer.alloc(n * 64);
    for (let i = 0; i < n; i++) for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) pixels[i * 64 + (r + (i % 2) * 4) * 8 + c + (Math.floor(i / 2) % 2) * 4] = 255;
    const header = Buffer.from([0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 8, 0, 0, 0, 8]);
    writeFileSync(join(dir, 'squares-idx3-ubyte'), Buffer.concat([header, pixels]));
    const images = loadIdxFile(join(dir, 'squares-idx3-ubyte'));
    const o: TrainOptions = { ...options, architecture: { arch: 'unet', channels: 8, levels: 2, embed: 16 }, sigmaData: 0.5, steps: 60, batchSize: 16, logEvery: 20, ema: 0 };
    ensureConvGradient();
    const untrained = networkDenoiser(networkFromLayersModel(buildNetwork(o.architecture, 64, images.image, 0)), { parameterization: 'edm', sigmaData: 0.5, noiseInput: 'edm', layout: 'hwc', dim: 64, image: images.image });
    const lossBefore = evaluateLoss(untrained.denoise, images, o, 0.5);
    const res = await trainDenoiser(images, o, new FsStore(dir));
    expect(res.metadata.layout).toBe('hwc');
    const { loadNetwork, inspectLocalModel } = await import('@trajlab/models');
    const trained = networkDenoiser(await loadNetwork(dir, 'model.json', inspectLocalModel(dir).contentHash), { parameterization: 'edm', sigmaData: 0.5, noiseInput: 'edm', layout: 'hwc', dim: 64, image: images.image });
    expect(evaluateLoss(trained.denoise, images, o, 0.5)).toBeLessThan(0.7 * lossBefore);
    untrained.dispose();
  });

  it('checkpoints resume to the same weights as an uninterrupted run; an existing model is never overwritten silently', () => {
    const dir = tempDir('trajlab-resume-');
    const spec = writeSpec(dir, { name: 'resume', dataset: { kind: 'two-moons', n: 200 }, model: { arch: 'mlp', width: 32, depth: 2, embed: 8 }, steps: 40, batchSize: 32, checkpointEvery: 20, logEvery: 10 }, 'train.yaml');
    const first = cli(['train', spec, '--out', join(dir, 'm'), '--quiet']);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toContain(`model     ${join(dir, 'm', 'model.json')}`);
    const weights = sha256(readFileSync(join(dir, 'm', 'weights.bin')));
    expect(existsSync(join(dir, 'm', 'checkpoints', 'step-0000020', 'state.bin'))).toBe(true);

    const again = cli(['train', spec, '--out', join(dir, 'm')]);
    expect(again.status).toBe(2);
    expect(again.stderr).toContain(`${join(dir, 'm', 'model.json')} already exists; pass --force`);
    expect(sha256(readFileSync(join(dir, 'm', 'weights.bin')))).toBe(weights);

    rmSync(join(dir, 'm', 'model.json'));
    rmSync(join(dir, 'm', 'weights.bin'));
    const resumed = cli(['train', spec, '--out', join(dir, 'm'), '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain('resumed from the checkpoint at step 20');
    expect(sha256(readFileSync(join(dir, 'm', 'weights.bin')))).toBe(weights);
    const meta = JSON.parse(readFileSync(join(dir, 'm', 'trajlab-model.json'), 'utf8'));
    expect(meta.training.lossHistory.map(([s]: [number]) => s)).toEqual([10, 20, 30, 40]);
  });

  it('rejects bad training specs naming the field', () => {
    const dir = tempDir('trajlab-trainspec-');
    const bad = (spec: object) => cli(['train', writeSpec(dir, spec, 'bad.yaml'), '--out', join(dir, 'never')]);
    const base = { name: 'bad', dataset: { kind: 'two-moons' }, steps: 10 };
    expect(bad({ ...base, model: { arch: 'transformer' } }).stderr).toContain('model.arch: unknown arch; expected mlp or unet');
    expect(bad({ ...base, model: { arch: 'unet' } }).stderr).toContain('model.arch: unet needs image data');
    expect(bad({ ...base, steps: 0 }).stderr).toContain('steps:');
    expect(bad({ ...base, learningrate: 1 }).stderr).toContain('learningrate: unknown key');
    expect(bad({ ...base, model: { arch: 'unet' } }).status).toBe(2);
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });
});

describe('trained models through files and S3', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => s3?.stop());

  it('a model trained to a directory and to s3:// gives identical files, and studies using either give identical rows', async () => {
    const dir = tempDir('trajlab-models3-');
    const env = { ...s3.env, TRAJLAB_DATA_CACHE: join(dir, 'cache') };
    const train = writeSpec(dir, { name: 'toy', dataset: { kind: 'gmm', dim: 2, components: 4, n: 300, seed: 4 }, model: { arch: 'mlp', width: 32, depth: 2, embed: 8 }, steps: 60, batchSize: 64, checkpointEvery: 0 }, 'train.yaml');
    const local = await cliAsync(['train', train, '--out', join(dir, 'models', 'toy'), '--quiet'], { env });
    expect(local.status, local.stderr).toBe(0);
    const remote = await cliAsync(['train', train, '--out', `s3://${s3.bucket}/models/toy`, '--quiet'], { env });
    expect(remote.status, remote.stderr).toBe(0);
    const store = openStore(`s3://${s3.bucket}/models/toy`, { ...process.env, ...s3.env });
    for (const f of ['model.json', 'weights.bin']) expect(sha256(await store.get(f)), f).toBe(sha256(readFileSync(join(dir, 'models', 'toy', f))));

    const study = (uri: string, file: string) =>
      writeSpec(dir, { name: 'toy-study', samples: 16, shardSize: 16, dataset: { kind: 'gmm', dim: 2, components: 4, n: 300, seed: 4 }, denoiser: { kind: 'tfjs', uri }, compare: { kind: 'optimal' }, solvers: [{ solver: 'heun', steps: 6 }] }, file);
    const a = await cliAsync(['run', study('./models/toy', 'local.yaml'), '--out', join(dir, 'out'), '--quiet'], { env });
    expect(a.status, a.stderr).toBe(0);
    const b = await cliAsync(['run', study(`s3://${s3.bucket}/models/toy`, 's3.yaml'), '--out', join(dir, 'out'), '--quiet'], { env });
    expect(b.status, b.stderr).toBe(0);
    const ids = [a.stdout, b.stdout].map((o) => /study\s+(\S+)/.exec(o)![1]!);
    expect(ids[0]).not.toBe(ids[1]); // the uri is part of the spec
    const table = (id: string, kind: string) => rows(readTable(join(dir, 'out', id, 'shards', 'heun-polynomial-rho7-s6', `000000-000015.${kind}.arrow`)));
    for (const kind of ['steps', 'samples']) expect(table(ids[1]!, kind)).toEqual(table(ids[0]!, kind));
    // score_dev: the learned denoiser against the optimal one at every visited point
    expect(table(ids[0]!, 'steps').every((r) => r.d_norm === null || (typeof r.score_dev === 'number' && r.score_dev >= 0))).toBe(true);
  });

  it('a missing weight shard on S3 is an input error naming the object', async () => {
    const dir = tempDir('trajlab-models3-missing-');
    const env = { ...s3.env, TRAJLAB_DATA_CACHE: join(dir, 'cache') };
    const store = openStore(`s3://${s3.bucket}/models/broken`, { ...process.env, ...s3.env });
    writeExactGaussianGraphModel(join(dir, 'g'), [0, 0], 1, 0.5, 'x0');
    await store.put('model.json', readFileSync(join(dir, 'g', 'model.json')));
    const spec = writeSpec(dir, { name: 'broken', samples: 2, dataset: { kind: 'gaussian', dim: 2 }, denoiser: { kind: 'tfjs', uri: `s3://${s3.bucket}/models/broken`, parameterization: 'x0' }, solvers: [{ solver: 'euler', steps: 2 }] });
    const res = await cliAsync(['validate', spec], { env });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain(`denoiser.uri: s3://${s3.bucket}/models/broken/group1-shard1of1.bin: weight shard named by s3://${s3.bucket}/models/broken/model.json is missing`);
  });
});
