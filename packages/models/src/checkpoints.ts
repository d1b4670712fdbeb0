import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ObjectStore } from '@trajlab/storage';
import type { Adam } from './adam.js';
import { storeIOHandler } from './io-handler.js';
import { METADATA_FILE, type ModelMetadata } from './metadata.js';

/**
 * Training checkpoints under checkpoints/step-NNNNNNN/: a loadable model (EMA weights) with its metadata, and the
 * state a resumed run needs (raw weights, EMA weights, Adam's moments and step count) as a tfjs weights file.
 */

const CHECKPOINTS = 'checkpoints';

/** The directory of the checkpoint at `step`. */
export const checkpointDir = (step: number) => `${CHECKPOINTS}/step-${String(step).padStart(7, '0')}`;

/** Saves the model with its EMA weights (the raw weights are restored afterwards), then its metadata. */
export async function saveModel(model: tfl.LayersModel, weights: tf.Variable[], ema: tf.Variable[], store: ObjectStore, dir: string, meta: ModelMetadata): Promise<void> {
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
export async function saveState(store: ObjectStore, dir: string, step: number, lossHistory: [number, number][], weights: tf.Variable[], ema: tf.Variable[], optimizer: Adam): Promise<void> {
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

export async function loadLatestState(store: ObjectStore, weights: tf.Variable[], ema: tf.Variable[], optimizer: Adam): Promise<{ step: number; lossHistory: [number, number][] } | null> {
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
