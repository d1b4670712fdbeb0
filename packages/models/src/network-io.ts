import * as tfconv from '@tensorflow/tfjs-converter';
import type * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { Network } from '@trajlab/denoisers';
import { artifactsOf, type ModelFiles } from './io-handler.js';
import { ModelFileError, modelFormat, modelInputs, splitInputs, weightCount, type ModelInput } from './model-files.js';

/**
 * Turns model files into a Network: a layers model (tf.LayersModel.predict) or a graph model (tfjs-converter
 * GraphModel.execute). A model has the data input and optionally a noise-level input of shape [B] or [B, 1]; the noise
 * input is recognised by its shape, the data input is the other one.
 */

function dataShape(input: ModelInput, where: string): number[] {
  const inner = input.shape.slice(1);
  if (inner.some((d) => d === null || d <= 0)) throw new ModelFileError(where, `data input '${input.name}' has shape [${input.shape.join(', ')}]; every dimension but the batch must be fixed`);
  return inner as number[];
}

/** Wraps an in-memory layers model (e.g. one being trained) as a Network; its inputs are split as in model files. */
export function networkFromLayersModel(model: tfl.LayersModel, where = model.name): Network {
  const inputs = model.inputs.map((t, i) => ({ name: model.inputNames[i]!, shape: t.shape }));
  const { data, noise } = splitInputs(inputs, where);
  const order = inputs.map((i) => (i === noise ? 'noise' : 'data'));
  return {
    inputShape: dataShape(data, where),
    noiseRank: noise === null ? null : (noise.shape.length as 1 | 2),
    predict: (x, n) => model.predict(inputs.length === 1 ? x : order.map((o) => (o === 'noise' ? n! : x))) as tf.Tensor,
    paramCount: model.countParams(),
    describe: `tfjs layers model ${model.name} (${model.countParams()} parameters)`,
    dispose: () => model.dispose(),
  };
}

/** Builds a Network from model files (layers or graph format). */
export async function networkFromFiles(files: ModelFiles, where: string): Promise<Network> {
  const inputs = modelInputs(files.json, where);
  const { data, noise } = splitInputs(inputs, where);
  const artifacts = artifactsOf(files);
  const handler = { load: async () => artifacts };
  if (modelFormat(files.json) === 'layers') {
    let model: tfl.LayersModel;
    try {
      model = await tfl.loadLayersModel(handler);
    } catch (err) {
      throw new ModelFileError(where, `cannot build the layers model (${(err as Error).message})`);
    }
    if (model.inputNames.length !== inputs.length || (noise && !model.inputNames.includes(noise.name))) {
      throw new ModelFileError(where, `model.json declares inputs ${inputs.map((i) => i.name).join(', ')} but the model has ${model.inputNames.join(', ')}`);
    }
    return networkFromLayersModel(model, where);
  }
  let model: tfconv.GraphModel;
  try {
    model = await tfconv.loadGraphModel(handler);
  } catch (err) {
    throw new ModelFileError(where, `cannot build the graph model (${(err as Error).message})`);
  }
  if (model.outputs.length !== 1) {
    throw new ModelFileError(where, `a denoiser graph model has one output; this one has ${model.outputs.length} (${model.outputs.map((o) => o.name).join(', ')}): nodes without consumers count as outputs`);
  }
  const paramCount = weightCount(files.json);
  return {
    inputShape: dataShape(data, where),
    noiseRank: noise === null ? null : (noise.shape.length as 1 | 2),
    predict: (x, n) => {
      const feed: Record<string, tf.Tensor> = { [data.name]: x };
      if (noise && n) feed[noise.name] = n;
      return model.execute(feed) as tf.Tensor;
    },
    paramCount,
    describe: `tfjs graph model (${paramCount} weights)`,
    dispose: () => model.dispose(),
  };
}
