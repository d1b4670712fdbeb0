import * as tf from '@tensorflow/tfjs-core';
import type { Network } from '@trajlab/denoisers';
import { FsStore, type ObjectStore } from '@trajlab/storage';
import { resolve } from 'node:path';
import { readModelFiles } from './io-handler.js';
import { METADATA_FILE, ModelFileError } from './model-files.js';

/**
 * Models are loaded once per process and shared (a worker serves many shards of a study, and `denoiser` and `compare`
 * may name the same model). The key includes the content hash, so a model rewritten in place is loaded afresh.
 */
const loaded = new Map<string, Promise<Network>>();

/** Loads (or reuses) the network of a local model directory; `contentHash` is the one study resolution computed. */
export function loadNetwork(dir: string, file: string, contentHash: string): Promise<Network> {
  const key = `${resolve(dir)}\u0000${file}\u0000${contentHash}`;
  let p = loaded.get(key);
  if (!p) {
    p = (async () => {
      const store = new FsStore(dir);
      const files = await readModelFiles(store, file);
      if (files.contentHash !== contentHash) throw new Error(`${store.locate(file)}: the model changed since the study was resolved`);
      // tfjs-layers and tfjs-converter are imported only when a model is actually loaded
      const { networkFromFiles } = await import('./network-io.js');
      const net = await networkFromFiles(files, store.locate(file));
      probe(net, store.locate(file));
      // shared: callers must not dispose it
      return { ...net, dispose: () => {} };
    })();
    p.catch(() => loaded.delete(key));
    loaded.set(key, p);
  }
  return p;
}

/**
 * Runs the network once on a zero input of batch 1: a network that fails, or returns something not shaped like its
 * data input, is refused with a message naming model.json before any study uses it.
 */
function probe(net: Network, where: string): void {
  let size: number;
  let shape: number[];
  try {
    [size, shape] = tf.tidy(() => {
      const y = net.predict(tf.zeros([1, ...net.inputShape]), net.noiseRank === null ? null : tf.zeros(net.noiseRank === 1 ? [1] : [1, 1]));
      return [y.size, y.shape] as [number, number[]];
    });
  } catch (err) {
    throw new ModelFileError(where, `the model fails on an input of shape [1, ${net.inputShape.join(', ')}] (${(err as Error).message})`);
  }
  if (size !== net.inputShape.reduce((a, b) => a * b, 1)) {
    throw new ModelFileError(where, `the model returns shape [${shape.join(', ')}] for an input of shape [1, ${net.inputShape.join(', ')}]; a denoiser network returns a tensor shaped like its data input`);
  }
}

/** Copies a model (model.json, its shards and trajlab-model.json if present) between stores, e.g. from S3 to a local cache. */
export async function copyModel(from: ObjectStore, file: string, to: ObjectStore): Promise<void> {
  const files = await readModelFiles(from, file);
  const dir = file.includes('/') ? file.slice(0, file.lastIndexOf('/') + 1) : '';
  const paths = files.json.weightsManifest.flatMap((g) => g.paths);
  for (const [i, p] of paths.entries()) await to.put(dir + p, files.shards[i]!);
  if (await from.exists(dir + METADATA_FILE)) await to.put(dir + METADATA_FILE, await from.get(dir + METADATA_FILE));
  await to.put(file, files.jsonBytes);
}
