import * as tf from '@tensorflow/tfjs-core';
import { normalStream, TRAJLAB_VERSION, uniformStream } from '@trajlab/core';
import type { Dataset } from '@trajlab/datasets';
import { preconditioning, type NoiseInput, type Parameterization } from '@trajlab/denoisers';
import type { ObjectStore } from '@trajlab/storage';
import { buildNetwork, type Architecture } from './architectures.js';
import { ensureConvGradient, ensureFastTransposedMatMul, restoreNativeMatMul } from './wasm-kernels.js';
import { Adam } from './adam.js';
import { checkpointDir, loadLatestState, saveModel, saveState } from './checkpoints.js';
import type { ModelMetadata } from './metadata.js';

/**
 * Training a denoiser with the EDM objective (Karras et al. 2022, section 5 and Table 1):
 *   ln sigma ~ N(pMean, pStd^2),  x = y + sigma n,  loss = lambda(sigma) ||D(x; sigma) - y||^2 / dim,
 *   lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2,
 * where D is the preconditioned network of the chosen parameterization (the same wrapper studies use), so the loss
 * is the EDM loss for `edm` and an equally weighted denoising loss for the others. Adam, constant learning rate,
 * an exponential moving average of the weights (saved), deterministic batches and noise (Philox streams of seed and
 * step), so a resumed run continues exactly where a checkpoint left off.
 */

/** Options of trainDenoiser (the `trajlab train` spec with defaults filled). */
export interface TrainOptions {
  architecture: Architecture;
  /** What the network predicts (see @trajlab/denoisers network.ts). @defaultValue 'edm' */
  parameterization: Parameterization;
  /** c_noise given to the network. @defaultValue 'edm' (ln(sigma)/4) */
  noiseInput: Exclude<NoiseInput, 'none'>;
  /** Standard deviation of the data; `auto` measures it (root mean per-coordinate variance). @defaultValue 'auto' */
  sigmaData: number | 'auto';
  /** Mean of ln(sigma) during training. @defaultValue -1.2 */
  pMean: number;
  /** Standard deviation of ln(sigma) during training. @defaultValue 1.2 */
  pStd: number;
  /** Optimizer steps in total (a resumed run continues up to this). */
  steps: number;
  /** Training points per step (drawn with replacement). @defaultValue 128 */
  batchSize: number;
  /** Adam learning rate. @defaultValue 1e-3 */
  learningRate: number;
  /** EMA decay of the saved weights (0 saves the raw weights); warmed up as min(ema, (1 + step) / (10 + step)). @defaultValue 0.999 */
  ema: number;
  /** Steps per logged loss (mean over the window). @defaultValue 50 */
  logEvery: number;
  /** Steps between checkpoints (0: none). @defaultValue 500 */
  checkpointEvery: number;
  seed: number;
  /**
   * Supply the wasm training kernels (Conv2DBackpropFilter, BatchMatMul on transposed operands); false keeps the
   * backend's own BatchMatMul (a diagnostic for benchmarks; convolutions cannot train on wasm without it). @defaultValue true
   */
  kernelPatches?: boolean;
}

/** What a training run reports as it goes. */
export interface TrainProgress {
  step: number;
  steps: number;
  /** Mean loss of the window that just ended. */
  loss: number;
  stepsPerSecond: number;
}

export interface TrainHooks {
  onLog?: (p: TrainProgress) => void;
  onCheckpoint?: (step: number, location: string) => void;
  /** Resume from the latest checkpoint under the output when there is one. @defaultValue false */
  resume?: boolean;
}

export interface TrainResult {
  metadata: ModelMetadata;
  /** Where model.json was written. */
  location: string;
  /** Step the run started from (0, or the checkpoint it resumed). */
  startStep: number;
}

/** Root mean per-coordinate variance of the data: the sigmaData `auto` uses (rounded to 4 significant digits). */
export function measureSigmaData(d: Dataset): number {
  const mean = new Float64Array(d.dim);
  for (let i = 0; i < d.n; i++) for (let k = 0; k < d.dim; k++) mean[k]! += d.points[i * d.dim + k]!;
  for (let k = 0; k < d.dim; k++) mean[k]! /= d.n;
  let ss = 0;
  for (let i = 0; i < d.n; i++) for (let k = 0; k < d.dim; k++) ss += (d.points[i * d.dim + k]! - mean[k]!) ** 2;
  return Number(Math.sqrt(ss / (d.n * d.dim)).toPrecision(4));
}

/** Philox stream ids of the training randomness (disjoint from each other for any step count below 2^24). */
const STREAM_BATCH = 0x1000000;
const STREAM_LOGSIGMA = 0x2000000;
const STREAM_NOISE = 0x3000000;

/** The batch, noise levels and noise of one step: a pure function of (seed, step). */
export function trainingBatch(d: Dataset, o: Pick<TrainOptions, 'batchSize' | 'pMean' | 'pStd' | 'seed'>, step: number) {
  const b = o.batchSize;
  const u = uniformStream(o.seed, STREAM_BATCH + step, b);
  const ln = normalStream(o.seed, STREAM_LOGSIGMA + step, b);
  const noise = normalStream(o.seed, STREAM_NOISE + step, b * d.dim);
  const y = new Float32Array(b * d.dim);
  for (let i = 0; i < b; i++) {
    const row = Math.min(d.n - 1, Math.floor(u[i]! * d.n));
    y.set(d.points.subarray(row * d.dim, (row + 1) * d.dim), i * d.dim);
  }
  const sigma = Float64Array.from(ln, (z) => Math.exp(o.pMean + o.pStd * z));
  return { y, sigma, noise: Float32Array.from(noise) };
}

/** Per-sample preconditioning as [B, 1] tensors. */
function coefficients(sigma: Float64Array, o: TrainOptions, sigmaData: number) {
  const p = Array.from(sigma, (s) => preconditioning(o.parameterization, s, sigmaData, o.noiseInput));
  const col = (f: (i: number) => number) => tf.tensor2d(Float32Array.from(p, (_, i) => f(i)), [p.length, 1]);
  return {
    cSkip: col((i) => p[i]!.cSkip),
    cOut: col((i) => p[i]!.cOut),
    cIn: col((i) => p[i]!.cIn),
    cNoise: col((i) => p[i]!.cNoise!),
    weight: col((i) => (sigma[i]! ** 2 + sigmaData ** 2) / (sigma[i]! * sigmaData) ** 2),
  };
}


/** Trains a denoiser on `data` and writes model.json, weights.bin and trajlab-model.json into `store`. */
export async function trainDenoiser(data: Dataset, o: TrainOptions, store: ObjectStore, hooks: TrainHooks = {}): Promise<TrainResult> {
  const sigmaData = o.sigmaData === 'auto' ? measureSigmaData(data) : o.sigmaData;
  if (o.architecture.arch === 'unet') ensureConvGradient();
  if (o.kernelPatches === false) restoreNativeMatMul();
  else ensureFastTransposedMatMul();
  const model = buildNetwork(o.architecture, data.dim, data.image, o.seed);
  const layout = o.architecture.arch === 'unet' ? 'hwc' : 'flat';
  const shape = layout === 'hwc' ? [data.image!.height, data.image!.width, data.image!.channels] : [data.dim];
  const weights = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = new Adam(weights, o.learningRate);
  const ema = weights.map((w) => tf.variable(w.clone(), false, `ema/${w.name}`));
  let lossHistory: [number, number][] = [];
  let start = 0;
  if (hooks.resume) {
    const resumed = await loadLatestState(store, weights, ema, optimizer);
    if (resumed) ({ step: start, lossHistory } = resumed);
  }
  let windowSum = 0;
  let windowCount = 0;
  let t0 = performance.now();
  let stepsSinceLog = 0;
  const metadata = (step: number): ModelMetadata => ({
    format: 'trajlab-model',
    version: 1,
    parameterization: o.parameterization,
    sigmaData,
    noiseInput: o.noiseInput,
    layout,
    dataset: { contentHash: data.contentHash, n: data.n, dim: data.dim, source: data.source, image: data.image },
    architecture: { ...o.architecture },
    training: {
      steps: step,
      batchSize: o.batchSize,
      learningRate: o.learningRate,
      seed: o.seed,
      finalLoss: lossHistory.length ? lossHistory[lossHistory.length - 1]![1] : Number.NaN,
      lossHistory,
      ema: o.ema,
    },
    trajlabVersion: TRAJLAB_VERSION,
  });
  for (let step = start; step < o.steps; step++) {
    const batch = trainingBatch(data, o, step);
    const c = coefficients(batch.sigma, o, sigmaData);
    const y = tf.tensor2d(batch.y, [o.batchSize, data.dim]);
    const n = tf.tensor2d(batch.noise, [o.batchSize, data.dim]);
    const { value: loss, grads } = tf.variableGrads(() => {
      const x = tf.add(y, tf.mul(n, tf.tensor2d(Float32Array.from(batch.sigma), [o.batchSize, 1])));
      const input = tf.reshape(tf.mul(x, c.cIn), [o.batchSize, ...shape]);
      const f = tf.reshape(model.apply([input, c.cNoise], { training: true }) as tf.Tensor, [o.batchSize, data.dim]);
      const d = tf.add(tf.mul(x, c.cSkip), tf.mul(f, c.cOut));
      return tf.mean(tf.mul(tf.mean(tf.square(tf.sub(d, y)), 1, true), c.weight)) as tf.Scalar;
    }, weights);
    optimizer.apply(weights, weights.map((w) => grads[w.name]!));
    const value = (await loss.data())[0]!;
    tf.dispose([loss, y, n, ...Object.values(c), ...Object.values(grads)]);
    if (!Number.isFinite(value)) throw new Error(`training diverged at step ${step}: loss ${value} (lower learningRate)`);
    updateEma(ema, weights, Math.min(o.ema, (1 + step) / (10 + step)));
    windowSum += value;
    windowCount++;
    stepsSinceLog++;
    const done = step + 1;
    if (done % o.logEvery === 0 || done === o.steps) {
      const now = performance.now();
      lossHistory.push([done, windowSum / windowCount]);
      hooks.onLog?.({ step: done, steps: o.steps, loss: windowSum / windowCount, stepsPerSecond: (1000 * stepsSinceLog) / (now - t0) });
      windowSum = 0;
      windowCount = 0;
      stepsSinceLog = 0;
      t0 = now;
    }
    if (o.checkpointEvery > 0 && done % o.checkpointEvery === 0 && done < o.steps) {
      await saveModel(model, weights, ema, store, checkpointDir(done), metadata(done));
      await saveState(store, checkpointDir(done), done, lossHistory, weights, ema, optimizer);
      hooks.onCheckpoint?.(done, store.locate(`${checkpointDir(done)}/model.json`));
    }
  }
  const meta = metadata(o.steps);
  await saveModel(model, weights, ema, store, '', meta);
  model.dispose();
  optimizer.dispose();
  tf.dispose(ema);
  return { metadata: meta, location: store.locate('model.json'), startStep: start };
}

function updateEma(ema: tf.Variable[], weights: tf.Variable[], decay: number): void {
  tf.tidy(() => {
    for (let i = 0; i < ema.length; i++) ema[i]!.assign(tf.add(tf.mul(ema[i]!, decay), tf.mul(weights[i]!, 1 - decay)));
  });
}
