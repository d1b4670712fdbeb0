import type { io } from '@tensorflow/tfjs-core';
import { StoreError, type ObjectStore } from '@trajlab/storage';
import { createHash } from 'node:crypto';
import { checkShardBytes, ModelFileError, parseModelJson, shardPaths, weightSpecs, type ModelJson } from './model-files.js';

/**
 * A TF.js IOHandler over an ObjectStore (a local directory or s3://bucket/prefix), so models load and save the same way
 * everywhere: tfjs's own `file://` handler exists only with tfjs-node. Saving writes the weights first and model.json last,
 * so a reader never finds a model.json whose shards are not there yet.
 */

/** The raw files of a model: model.json and its shards, checked against each other. */
export interface ModelFiles {
  json: ModelJson;
  jsonBytes: Uint8Array;
  /** Shard contents in manifest order. */
  shards: Uint8Array[];
  /** sha256 over model.json and every shard (the model's identity in a study id). */
  contentHash: string;
}

/** Reads model.json (`file` inside the store) and every shard it names; missing or short shards are errors naming the file. */
export async function readModelFiles(store: ObjectStore, file = 'model.json'): Promise<ModelFiles> {
  const where = store.locate(file);
  const jsonBytes = await getOrExplain(store, file, 'model.json not found');
  const json = parseModelJson(new TextDecoder().decode(jsonBytes), where);
  const dir = file.includes('/') ? file.slice(0, file.lastIndexOf('/') + 1) : '';
  const shards: Uint8Array[] = [];
  for (const path of shardPaths(json)) shards.push(await getOrExplain(store, dir + path, `weight shard named by ${where} is missing`));
  checkShardBytes(json, shards, where);
  return { json, jsonBytes, shards, contentHash: modelContentHash(jsonBytes, shards) };
}

/** sha256 over model.json and its shards, each prefixed by its length. */
export function modelContentHash(jsonBytes: Uint8Array, shards: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const part of [jsonBytes, ...shards]) {
    h.update(String(part.byteLength) + ':');
    h.update(part);
  }
  return h.digest('hex');
}

async function getOrExplain(store: ObjectStore, key: string, missing: string): Promise<Uint8Array> {
  try {
    return await store.get(key);
  } catch (err) {
    if (err instanceof StoreError && !(await store.exists(key).catch(() => true))) throw new ModelFileError(store.locate(key), missing);
    throw err;
  }
}

function concat(parts: Uint8Array[]): ArrayBuffer {
  const total = parts.reduce((a, p) => a + p.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out.buffer;
}

/** Model artifacts (what tfjs loaders take) from model files. */
export function artifactsOf(files: ModelFiles): io.ModelArtifacts {
  const { json } = files;
  return {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata as io.ModelArtifacts['userDefinedMetadata'],
    modelInitializer: json.modelInitializer,
    trainingConfig: json.trainingConfig,
    weightSpecs: weightSpecs(json),
    weightData: concat(files.shards),
  };
}

/** Name of the single weight shard trajlab writes. */
export const WEIGHTS_FILE = 'weights.bin';

/** An IOHandler reading and writing `file` (default model.json) and its shards inside `store`. */
export function storeIOHandler(store: ObjectStore, file = 'model.json'): io.IOHandler {
  const dir = file.includes('/') ? file.slice(0, file.lastIndexOf('/') + 1) : '';
  return {
    load: async () => artifactsOf(await readModelFiles(store, file)),
    save: async (artifacts: io.ModelArtifacts): Promise<io.SaveResult> => {
      if (artifacts.modelTopology instanceof ArrayBuffer) throw new Error('binary model topologies are not supported; save a layers model');
      const data = artifacts.weightData === undefined ? new ArrayBuffer(0) : Array.isArray(artifacts.weightData) ? concat(artifacts.weightData.map((b) => new Uint8Array(b))) : artifacts.weightData;
      await store.put(dir + WEIGHTS_FILE, new Uint8Array(data));
      const json = {
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        modelTopology: artifacts.modelTopology,
        trainingConfig: artifacts.trainingConfig,
        userDefinedMetadata: artifacts.userDefinedMetadata,
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
      };
      const text = new TextEncoder().encode(JSON.stringify(json));
      await store.put(file, text);
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', modelTopologyBytes: text.byteLength, weightDataBytes: data.byteLength } };
    },
  };
}
