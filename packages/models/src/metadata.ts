import { LAYOUTS, NOISE_INPUTS, PARAMETERIZATIONS } from '@trajlab/denoisers';
import { z } from 'zod';
import { METADATA_FILE, ModelFileError, parseJsonFile } from './model-files.js';

/**
 * trajlab-model.json: what a study needs to use a model trained by `trajlab train` (its parameterization and input
 * conventions) and what it was trained on (dataset content hash, steps, final loss), next to model.json.
 */
export const modelMetadataSchema = z.object({
  format: z.literal('trajlab-model'),
  /** Schema version of this file. */
  version: z.literal(1),
  parameterization: z.enum(PARAMETERIZATIONS),
  sigmaData: z.number().positive(),
  noiseInput: z.enum(NOISE_INPUTS),
  layout: z.enum(LAYOUTS),
  dataset: z.object({
    /** Content hash of the training data (the study datasets' contentHash). */
    contentHash: z.string(),
    n: z.number().int(),
    dim: z.number().int(),
    source: z.string(),
    image: z.object({ height: z.number().int(), width: z.number().int(), channels: z.number().int() }).optional(),
  }),
  architecture: z.record(z.string(), z.unknown()),
  training: z.object({
    /** Optimizer steps done. */
    steps: z.number().int(),
    batchSize: z.number().int(),
    learningRate: z.number(),
    seed: z.number().int(),
    /** Mean EDM-weighted loss over the last logging window. */
    finalLoss: z.number(),
    /** (step, mean loss over the window ending at step). */
    lossHistory: z.array(z.tuple([z.number().int(), z.number()])),
    /** EMA decay of the saved weights (0: raw weights). */
    ema: z.number(),
  }),
  trajlabVersion: z.string(),
});
export type ModelMetadata = z.infer<typeof modelMetadataSchema>;

/** Parses trajlab-model.json text; `where` names the file in errors. */
export function parseModelMetadata(text: string, where: string): ModelMetadata {
  const res = modelMetadataSchema.safeParse(parseJsonFile(text, where));
  if (!res.success) {
    const iss = res.error.issues[0]!;
    throw new ModelFileError(where, `${iss.path.join('.') || '(file)'}: ${iss.message}`);
  }
  return res.data;
}

export { METADATA_FILE };
