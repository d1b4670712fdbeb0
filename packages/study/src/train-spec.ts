import { NOISE_INPUTS, PARAMETERIZATIONS } from '@trajlab/denoisers';
import type { Architecture, TrainOptions } from '@trajlab/models/training';
import { dirname, resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import { loadDataset } from './datasets.js';
import { SpecError } from './errors.js';
import { parseSpecText, readSpecFile } from './spec-file.js';
import { datasetSchema } from './spec.js';
import type { Dataset } from '@trajlab/datasets';

/** The network of a training spec, each option with its default. */
const modelSchema = z.discriminatedUnion(
  'arch',
  [
    z.strictObject({
      arch: z.literal('mlp'),
      /** @defaultValue 256 */
      width: z.number().int().positive().default(256),
      /** @defaultValue 4 */
      depth: z.number().int().positive().default(4),
      /** @defaultValue 64 */
      embed: z.number().int().positive().default(64),
    }),
    z.strictObject({
      arch: z.literal('unet'),
      /** @defaultValue 32 */
      channels: z.number().int().positive().default(32),
      /** @defaultValue 2 */
      levels: z.number().int().min(1).max(4).default(2),
      /** @defaultValue 64 */
      embed: z.number().int().positive().default(64),
    }),
  ],
  { error: (iss) => (iss.code === 'invalid_union' ? 'unknown arch; expected mlp or unet' : undefined) },
);

/**
 * The `trajlab train` spec: a dataset (any study dataset kind), a network and the EDM training recipe. Every option
 * documents its default.
 */
export const trainSpecSchema = z.strictObject({
  /** Model name: [a-z0-9][a-z0-9-]*; the default output is <TRAJLAB_OUT>/models/<name>. */
  name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must match [a-z0-9][a-z0-9-]* (lower case, digits, dashes)'),
  /** Seed of the initial weights, batches and noise. @defaultValue 0 */
  seed: z.number().int().min(0).max(0xffffffff).default(0),
  dataset: datasetSchema,
  /** The network: `mlp` for vectors, `unet` for images. @defaultValue unet for image data, mlp otherwise */
  model: modelSchema.optional(),
  /** What the network predicts: edm | eps | x0 | v. @defaultValue edm */
  parameterization: z.enum(PARAMETERIZATIONS).default('edm'),
  /** c_noise fed to the network: edm (ln(sigma)/4) | sigma | log-sigma. @defaultValue edm */
  noiseInput: z.enum(NOISE_INPUTS).exclude(['none']).default('edm'),
  /** Data standard deviation, or auto (measured from the data). @defaultValue auto */
  sigmaData: z.union([z.number().positive(), z.literal('auto')]).default('auto'),
  /** Log-normal training noise levels: ln sigma ~ N(pMean, pStd^2). @defaultValue { pMean: -1.2, pStd: 1.2 } */
  noise: z.strictObject({ pMean: z.number().default(-1.2), pStd: z.number().positive().default(1.2) }).default({ pMean: -1.2, pStd: 1.2 }),
  /** Optimizer steps. */
  steps: z.number().int().positive(),
  /** @defaultValue 128 */
  batchSize: z.number().int().positive().default(128),
  /** Adam learning rate. @defaultValue 0.001 */
  learningRate: z.number().positive().default(1e-3),
  /** EMA decay of the saved weights (0: raw weights). @defaultValue 0.999 */
  ema: z.number().min(0).lt(1).default(0.999),
  /** Steps per logged loss. @defaultValue 50 */
  logEvery: z.number().int().positive().default(50),
  /** Steps between checkpoints (0: none). @defaultValue 500 */
  checkpointEvery: z.number().int().min(0).default(500),
});
export type TrainSpec = z.infer<typeof trainSpecSchema>;

/** A validated training spec with its dataset loaded and the options trainDenoiser takes. */
export interface ResolvedTraining {
  spec: TrainSpec;
  dataset: Dataset;
  options: TrainOptions;
}

/** Reads, validates and resolves a training spec file; problems are SpecErrors naming the field and file. */
export function resolveTrainFile(path: string): ResolvedTraining {
  const spec = parseSpecText(readSpecFile(path), path, trainSpecSchema, 'training spec');
  try {
    const dataset = loadDataset(spec.dataset, dirname(resolvePath(path)), 'dataset');
    const architecture: Architecture = spec.model ?? modelSchema.parse({ arch: dataset.image ? 'unet' : 'mlp' });
    if (architecture.arch === 'unet') {
      if (!dataset.image) throw new SpecError('model.arch', `unet needs image data; ${dataset.source} has flat vectors of dim ${dataset.dim} (use arch: mlp)`);
      const f = 2 ** architecture.levels;
      if (dataset.image.height % f || dataset.image.width % f) throw new SpecError('model.levels', `${dataset.image.height}x${dataset.image.width} images cannot be halved ${architecture.levels} times`);
    }
    const options: TrainOptions = {
      architecture,
      parameterization: spec.parameterization,
      noiseInput: spec.noiseInput,
      sigmaData: spec.sigmaData,
      pMean: spec.noise.pMean,
      pStd: spec.noise.pStd,
      steps: spec.steps,
      batchSize: spec.batchSize,
      learningRate: spec.learningRate,
      ema: spec.ema,
      logEvery: spec.logEvery,
      checkpointEvery: spec.checkpointEvery,
      seed: spec.seed,
    };
    return { spec: { ...spec, model: architecture }, dataset, options };
  } catch (err) {
    if (err instanceof SpecError && !err.file) throw new SpecError(err.field, err.detail, path);
    throw err;
  }
}
