import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { normalStream, TRAJLAB_VERSION, uniformStream } from '@trajlab/core';
import type { Dataset } from '@trajlab/datasets';
import { preconditioning, type NoiseInput, type Parameterization } from '@trajlab/denoisers';
import type { ObjectStore } from '@trajlab/storage';
import { buildNetwork, type Architecture } from './architectures.js';
import { ensureConvGradient, ensureFastTransposedMatMul } from './conv-gradient.js';
import { storeIOHandler } from './io-handler.js';
import { METADATA_FILE, type ModelMetadata } from './metadata.js';

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

const CHECKPOINTS = 'checkpoints';
const stepDir = (step: number) => `${CHECKPOINTS}/step-${String(step).padStart(7, '0')}`;

/** Trains a denoiser on `data` and writes model.json, weights.bin and trajlab-model.json into `store`. */
export async function trainDenoiser(data: Dataset, o: TrainOptions, store: ObjectStore, hooks: TrainHooks = {}): Promise<TrainResult> {
  const sigmaData = o.sigmaData === 'auto' ? measureSigmaData(data) : o.sigmaData;
  if (o.architecture.arch === 'unet') ensureConvGradient();
  ensureFastTransposedMatMul();
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
      await saveModel(model, weights, ema, store, stepDir(done), metadata(done));
      await saveState(store, stepDir(done), done, lossHistory, weights, ema, optimizer);
      hooks.onCheckpoint?.(done, store.locate(`${stepDir(done)}/model.json`));
    }
  }
  const meta = metadata(o.steps);
  await saveModel(model, weights, ema, store, '', meta);
  model.dispose();
  optimizer.dispose();
  tf.dispose(ema);
  return { metadata: meta, location: store.locate('model.json'), startStep: start };
}

/**
 * Adam (Kingma & Ba 2015) with its state in plain variables: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
 * w <- w - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). The bias corrections are computed from the step count in
 * float64 each step (tf.train.adam accumulates them by repeated float32 products, which a resumed run cannot
 * reproduce bit for bit).
 */
class Adam {
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  /** Steps taken. */
  t = 0;
  constructor(
    weights: tf.Variable[],
    private readonly lr: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    this.m = weights.map((w) => tf.variable(tf.zerosLike(w), false));
    this.v = weights.map((w) => tf.variable(tf.zerosLike(w), false));
  }

  apply(weights: tf.Variable[], grads: tf.Tensor[]): void {
    this.t++;
    const c1 = 1 - this.beta1 ** this.t;
    const c2 = 1 - this.beta2 ** this.t;
    tf.tidy(() => {
      weights.forEach((w, i) => {
        const g = grads[i]!;
        const m = tf.add(tf.mul(this.m[i]!, this.beta1), tf.mul(g, 1 - this.beta1));
        const v = tf.add(tf.mul(this.v[i]!, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        this.m[i]!.assign(m);
        this.v[i]!.assign(v);
        w.assign(tf.sub(w, tf.div(tf.mul(m, this.lr / c1), tf.add(tf.sqrt(tf.div(v, c2)), this.eps))));
      });
    });
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

function updateEma(ema: tf.Variable[], weights: tf.Variable[], decay: number): void {
  tf.tidy(() => {
    for (let i = 0; i < ema.length; i++) ema[i]!.assign(tf.add(tf.mul(ema[i]!, decay), tf.mul(weights[i]!, 1 - decay)));
  });
}

/** Saves the model with its EMA weights (the raw weights are restored afterwards), then its metadata. */
async function saveModel(model: tfl.LayersModel, weights: tf.Variable[], ema: tf.Variable[], store: ObjectStore, dir: string, meta: ModelMetadata): Promise<void> {
  const raw = weights.map((w) => w.clone());
  weights.forEach((w, i) => w.assign(ema[i]!));
  try {
    await model.save(storeIOHandler(store, dir ? `${dir}/model.json` : 'model.json'));
  } finally {
    weights.forEach((w, i) => w.assign(raw[i]!));
    tf.dispose(raw);
  }
  await store.put(dir ? `${dir}/${METADATA_FILE}` : METADATA_FILE, new TextEncoder().encode(JSON.stringify(meta, null, 2)));
}

/** Raw weights, EMA weights and optimizer slots of a checkpoint, for resuming. */
async function saveState(store: ObjectStore, dir: string, step: number, lossHistory: [number, number][], weights: tf.Variable[], ema: tf.Variable[], optimizer: Adam): Promise<void> {
  const named: tf.NamedTensorMap = {};
  weights.forEach((w, i) => {
    named[`weight/${i}`] = w;
    named[`ema/${i}`] = ema[i]!;
    named[`adam_m/${i}`] = optimizer.m[i]!;
    named[`adam_v/${i}`] = optimizer.v[i]!;
  });
  const { data, specs } = await tf.io.encodeWeights(named);
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(tf.io.concatenateArrayBuffers(data));
  await store.put(`${dir}/state.bin`, bytes);
  const json = { step, lossHistory, specs, adamSteps: optimizer.t };
  await store.put(`${dir}/state.json`, new TextEncoder().encode(JSON.stringify(json)));
}

async function loadLatestState(store: ObjectStore, weights: tf.Variable[], ema: tf.Variable[], optimizer: Adam): Promise<{ step: number; lossHistory: [number, number][] } | null> {
  const states = (await store.list(`${CHECKPOINTS}/`)).filter((k) => k.endsWith('/state.json')).sort();
  const latest = states[states.length - 1];
  if (!latest) return null;
  const dir = latest.slice(0, -'/state.json'.length);
  const json = JSON.parse(new TextDecoder().decode(await store.get(latest))) as {
    step: number;
    lossHistory: [number, number][];
    specs: tf.io.WeightsManifestEntry[];
    adamSteps: number;
  };
  const bin = await store.get(`${dir}/state.bin`);
  const named = tf.io.decodeWeights(bin.slice().buffer, json.specs);
  if (weights.some((_, i) => !named[`weight/${i}`] || named[`weight/${i}`]!.shape.join() !== weights[i]!.shape.join())) {
    throw new Error(`${store.locate(latest)}: the checkpoint does not match this model (different architecture?)`);
  }
  weights.forEach((w, i) => w.assign(named[`weight/${i}`]!));
  ema.forEach((w, i) => w.assign(named[`ema/${i}`]!));
  optimizer.m.forEach((w, i) => w.assign(named[`adam_m/${i}`]!));
  optimizer.v.forEach((w, i) => w.assign(named[`adam_v/${i}`]!));
  optimizer.t = json.adamSteps;
  tf.dispose(Object.values(named));
  return { step: json.step, lossHistory: json.lossHistory };
}

/** Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628274631];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/**
 * The EDM-weighted denoising loss of any denoiser on fixed evaluation draws: noise levels at `levels` quantiles of the
 * training distribution of ln(sigma), `batches` batches of training points and noise per level (Philox streams of
 * seed + 1, never used by training). Evaluated through the study wrapper, so trained networks, untrained ones and the
 * optimal denoiser (the minimum over the training set) are measured the same way.
 */
export function evaluateLoss(
  denoise: (x: tf.Tensor2D, sigma: number) => tf.Tensor2D,
  data: Dataset,
  o: Pick<TrainOptions, 'batchSize' | 'pMean' | 'pStd' | 'seed'>,
  sigmaData: number,
  levels = 8,
  batches = 2,
): number {
  let total = 0;
  for (let l = 0; l < levels; l++) {
    const sigma = Math.exp(o.pMean + o.pStd * normalQuantile((l + 0.5) / levels));
    const weight = (sigma ** 2 + sigmaData ** 2) / (sigma * sigmaData) ** 2;
    for (let k = 0; k < batches; k++) {
      const batch = trainingBatch(data, { ...o, seed: (o.seed + 1) >>> 0 }, l * batches + k);
      total += tf.tidy(() => {
        const y = tf.tensor2d(batch.y, [o.batchSize, data.dim]);
        const x = tf.add(y, tf.mul(tf.tensor2d(batch.noise, [o.batchSize, data.dim]), sigma)) as tf.Tensor2D;
        return weight * tf.mean(tf.square(tf.sub(denoise(x, sigma), y))).dataSync()[0]!;
      });
    }
  }
  return total / (levels * batches);
}
