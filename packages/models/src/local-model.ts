import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { modelContentHash } from './io-handler.js';
import { parseModelMetadata, type ModelMetadata } from './metadata.js';
import { checkShardBytes, METADATA_FILE, ModelFileError, modelFormat, modelInputs, modelOutputs, parseModelJson, shardPaths, weightCount, type ModelInput } from './model-files.js';

/** What a study needs to know of a model before any tensor is built. */
export interface ModelInfo {
  /** model.json path (for messages). */
  where: string;
  format: 'layers' | 'graph';
  inputs: ModelInput[];
  contentHash: string;
  /** Number of weights in the manifest. */
  weights: number;
  /** trajlab-model.json when present. */
  metadata: ModelMetadata | null;
}

function readOrExplain(path: string, missing: string): Uint8Array {
  if (!existsSync(path)) throw new ModelFileError(path, missing);
  if (statSync(path).isDirectory()) throw new ModelFileError(path, 'is a directory, expected a file');
  return readFileSync(path);
}

/**
 * Reads a model from a local directory synchronously (study resolution is synchronous; s3:// models are downloaded to a
 * local cache first): checks that every shard exists and that together they hold the manifest's bytes.
 */
export function inspectLocalModel(dir: string, file = 'model.json'): ModelInfo {
  const where = join(dir, file);
  if (!existsSync(dir)) throw new ModelFileError(dir, 'model directory not found');
  const jsonBytes = readOrExplain(where, 'model.json not found');
  const json = parseModelJson(new TextDecoder().decode(jsonBytes), where);
  const base = file.includes('/') ? join(dir, file.slice(0, file.lastIndexOf('/'))) : dir;
  const shards = shardPaths(json).map((p) => readOrExplain(join(base, p), `weight shard named by ${where} is missing`));
  checkShardBytes(json, shards, where);
  const outputs = modelOutputs(json);
  if (outputs.length > 1) throw new ModelFileError(where, `a denoiser model has one output; this one has ${outputs.length} (${outputs.join(', ')}); in a graph model every node nothing consumes is an output`);
  const metaPath = join(base, METADATA_FILE);
  const metadata = existsSync(metaPath) ? parseModelMetadata(readFileSync(metaPath, 'utf8'), metaPath) : null;
  return { where, format: modelFormat(json), inputs: modelInputs(json, where), contentHash: modelContentHash(jsonBytes, shards), weights: weightCount(json), metadata };
}
