import type { io } from '@tensorflow/tfjs-core';

/**
 * The TF.js model format as files: `model.json` (topology + weightsManifest) and binary weight shards named by the
 * manifest, relative to model.json's directory. trajlab adds an optional `trajlab-model.json` (ModelMetadata) next to it.
 */

/** The metadata file trajlab writes next to the models it trains. */
export const METADATA_FILE = 'trajlab-model.json';

/** A model file that is missing, unreadable or inconsistent; the message names the file. */
export class ModelFileError extends Error {
  constructor(
    /** The file (local path or s3:// uri). */
    readonly file: string,
    readonly detail: string,
  ) {
    super(`${file}: ${detail}`);
    this.name = 'ModelFileError';
  }
}

/** The parts of model.json trajlab uses. */
export interface ModelJson {
  format?: string;
  modelTopology: Record<string, unknown>;
  weightsManifest: io.WeightsManifestConfig;
  generatedBy?: string;
  convertedBy?: string | null;
  signature?: Record<string, unknown>;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: Record<string, unknown>;
  trainingConfig?: io.TrainingConfig;
}

/** One input of a model: name and shape (batch dimension first, null where free). */
export interface ModelInput {
  name: string;
  shape: (number | null)[];
}

/** Splits a model uri into its directory and the model.json file name (a uri naming a directory means model.json). */
export function splitModelUri(uri: string): { dir: string; file: string } {
  const trimmed = uri.replace(/\/+$/, '');
  if (trimmed.endsWith('.json')) {
    const slash = trimmed.lastIndexOf('/');
    return slash < 0 ? { dir: '.', file: trimmed } : { dir: trimmed.slice(0, slash) || '/', file: trimmed.slice(slash + 1) };
  }
  return { dir: trimmed, file: 'model.json' };
}

/** JSON.parse with a ModelFileError naming the file. */
export function parseJsonFile(text: string, where: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ModelFileError(where, `not valid JSON (${(err as Error).message})`);
  }
}

/** Parses and checks model.json text. */
export function parseModelJson(text: string, where: string): ModelJson {
  const m = parseJsonFile(text, where) as Partial<ModelJson> | null;
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new ModelFileError(where, 'not a TF.js model.json (expected an object)');
  if (!m.modelTopology || typeof m.modelTopology !== 'object') throw new ModelFileError(where, 'not a TF.js model.json (no modelTopology)');
  if (!Array.isArray(m.weightsManifest)) throw new ModelFileError(where, 'not a TF.js model.json (no weightsManifest)');
  for (const [g, group] of m.weightsManifest.entries()) {
    if (!Array.isArray(group?.paths) || !Array.isArray(group?.weights)) throw new ModelFileError(where, `weightsManifest[${g}] needs paths and weights`);
    for (const p of group.paths) {
      if (typeof p !== 'string' || p === '' || p.startsWith('/') || /^[a-z][a-z0-9+.-]*:/i.test(p) || p.split('/').some((s) => s === '..' || s === '.' || s === '')) {
        throw new ModelFileError(where, `weight shard path '${String(p)}' must be a plain path relative to model.json`);
      }
    }
  }
  return m as ModelJson;
}

/** Weight shard paths in manifest order (relative to model.json's directory). */
export function shardPaths(m: ModelJson): string[] {
  return m.weightsManifest.flatMap((g) => g.paths);
}

/** Weight specs in manifest order. */
export function weightSpecs(m: ModelJson): io.WeightsManifestEntry[] {
  return m.weightsManifest.flatMap((g) => g.weights);
}

/** Number of weights the manifest declares. */
export function weightCount(m: ModelJson): number {
  return weightSpecs(m).reduce((a, w) => a + w.shape.reduce((p, d) => p * d, 1), 0);
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2, complex64: 8 };

/** Bytes the weight shards must hold, from the manifest's weight specs (quantized weights counted at their stored size). */
export function expectedWeightBytes(m: ModelJson, where: string): number {
  let total = 0;
  for (const w of weightSpecs(m)) {
    const dtype = w.quantization?.dtype ?? w.dtype;
    const bytes = BYTES[dtype];
    if (bytes === undefined) throw new ModelFileError(where, `weight '${w.name}' has dtype '${dtype}', which trajlab does not load`);
    total += bytes * w.shape.reduce((a, b) => a * b, 1);
  }
  return total;
}

/** Whether model.json describes a layers model (tf.LayersModel) or a graph model (converted SavedModel / GraphDef). */
export function modelFormat(m: ModelJson): 'layers' | 'graph' {
  if (m.format === 'layers-model') return 'layers';
  if (m.format === 'graph-model') return 'graph';
  return Array.isArray((m.modelTopology as { node?: unknown }).node) ? 'graph' : 'layers';
}

interface LayerConfig {
  class_name?: string;
  name?: string;
  config?: { name?: string; batch_input_shape?: (number | null)[]; batchInputShape?: (number | null)[] };
}

/**
 * The inputs a model.json declares, in order: a layers model's input layers (batch_input_shape) or a graph model's
 * signature inputs / Placeholder nodes.
 */
export function modelInputs(m: ModelJson, where: string): ModelInput[] {
  const topo = m.modelTopology as Record<string, unknown>;
  if (modelFormat(m) === 'layers') {
    const cfg = ((topo.model_config as { config?: unknown } | undefined)?.config ?? topo.config) as
      | { input_layers?: [string, number, number][]; layers?: LayerConfig[] }
      | undefined;
    const layers = cfg?.layers ?? [];
    const names = cfg?.input_layers?.map((l) => l[0]) ?? layers.filter((l) => l.class_name === 'InputLayer').map((l) => l.config?.name ?? l.name ?? '');
    if (names.length === 0 && layers[0]?.config?.batch_input_shape) return [{ name: layers[0].config.name ?? 'input', shape: layers[0].config.batch_input_shape }];
    return names.map((name) => {
      const layer = layers.find((l) => (l.config?.name ?? l.name) === name);
      const shape = layer?.config?.batch_input_shape ?? layer?.config?.batchInputShape;
      if (!shape) throw new ModelFileError(where, `input layer '${name}' has no batch_input_shape`);
      return { name, shape };
    });
  }
  const sigInputs = (m.signature as { inputs?: Record<string, { name?: string; tensorShape?: { dim?: { size?: string | number }[] } }> } | undefined)?.inputs;
  const dimsOf = (dims: { size?: string | number }[] | undefined) => (dims ?? []).map((d) => (d.size === undefined || Number(d.size) < 0 ? null : Number(d.size)));
  if (sigInputs && Object.keys(sigInputs).length > 0) {
    return Object.entries(sigInputs).map(([key, v]) => ({ name: (v.name ?? key).replace(/:0$/, ''), shape: dimsOf(v.tensorShape?.dim) }));
  }
  const nodes = (topo.node ?? []) as { name: string; op: string; attr?: { shape?: { shape?: { dim?: { size?: string | number }[] } } } }[];
  return nodes.filter((n) => n.op === 'Placeholder').map((n) => ({ name: n.name, shape: dimsOf(n.attr?.shape?.shape?.dim) }));
}

/** The shards must hold exactly the bytes the manifest's weights need (a truncated or swapped shard is caught here). */
export function checkShardBytes(m: ModelJson, shards: Uint8Array[], where: string): void {
  const have = shards.reduce((a, s) => a + s.byteLength, 0);
  const need = expectedWeightBytes(m, where);
  if (have !== need) {
    throw new ModelFileError(where, `weight shards hold ${have} bytes but the manifest's weights need ${need} (${shardPaths(m).join(', ')}): truncated or mismatched shard`);
  }
}

/** Which declared input carries the data and which the noise level. */
export function splitInputs(inputs: ModelInput[], where: string): { data: ModelInput; noise: ModelInput | null } {
  const isNoise = (i: ModelInput) => i.shape.length === 1 || (i.shape.length === 2 && i.shape[1] === 1);
  if (inputs.length === 1) return { data: inputs[0]!, noise: null };
  if (inputs.length !== 2) throw new ModelFileError(where, `a denoiser model takes the data and optionally a noise level; this one has ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')})`);
  const noise = inputs.filter(isNoise);
  if (noise.length === 0) {
    throw new ModelFileError(where, `neither input (${inputs.map((i) => `${i.name} [${i.shape.join(', ')}]`).join(', ')}) has the noise-level shape [batch] or [batch, 1]`);
  }
  // with two noise-shaped inputs (a flat model of dim 1), the second is the noise level
  const n = noise.length === 2 ? inputs[1]! : noise[0]!;
  return { data: inputs.find((i) => i !== n)!, noise: n };
}

/**
 * Output nodes of a graph model: nodes no other node consumes (as tfjs-converter decides them), or the signature's
 * outputs when model.json has a signature. Layers models: their declared outputs.
 */
export function modelOutputs(m: ModelJson): string[] {
  const sig = (m.signature as { outputs?: Record<string, { name?: string }> } | undefined)?.outputs;
  if (sig && Object.keys(sig).length > 0) return Object.entries(sig).map(([k, v]) => v.name ?? k);
  const topo = m.modelTopology as Record<string, unknown>;
  if (modelFormat(m) === 'layers') {
    const cfg = ((topo.model_config as { config?: unknown } | undefined)?.config ?? topo.config) as { output_layers?: [string, number, number][] } | undefined;
    return (cfg?.output_layers ?? []).map((o) => o[0]);
  }
  const nodes = (topo.node ?? []) as { name: string; input?: string[] }[];
  const consumed = new Set(nodes.flatMap((n) => (n.input ?? []).map((i) => i.replace(/^\^/, '').replace(/:\d+$/, ''))));
  return nodes.filter((n) => !consumed.has(n.name)).map((n) => n.name);
}
