import type { Dataset } from '@trajlab/datasets';
import { layoutShape, type Layout } from '@trajlab/denoisers';
import { inspectLocalModel, ModelFileError, splitInputs, splitModelUri, type ModelInfo } from '@trajlab/models';
import { datasetPath } from './datasets.js';
import { cachedModelDir } from './remote-data.js';
import { SpecError } from './errors.js';
import type { DenoiserSpecInput } from './spec.js';

type TfjsSpec = Extract<DenoiserSpecInput, { kind: 'tfjs' }>;

/** A tfjs model as a study uses it: where its files are locally and what resolution learned from them. */
export interface ResolvedModel {
  /** The uri as written in the spec. */
  uri: string;
  /** Local directory holding model.json (the download cache for s3:// models). */
  dir: string;
  /** model.json file name inside dir. */
  file: string;
  contentHash: string;
  format: 'layers' | 'graph';
  /** Number of weights (for cost estimates). */
  weights: number;
  /** Content hash of the data the model was trained on (from trajlab-model.json), if known. */
  trainedOn?: string;
}

/** Local directory and file of a model uri (s3:// ones must have been downloaded by prefetchRemoteData). */
export function modelLocation(uri: string, baseDir: string, field: string): { dir: string; file: string } {
  const { dir, file } = splitModelUri(uri);
  return { dir: datasetPath(dir, baseDir, field, uri.startsWith('s3://') ? cachedModelDir(uri) : undefined), file };
}

function sameShape(a: readonly (number | null)[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The layout implied by a model's data input shape for this data (null if none fits). */
function inferLayout(shape: number[], data: Pick<Dataset, 'dim' | 'image'>): Layout | null {
  for (const layout of ['flat', 'hwc', 'chw'] as const) {
    const want = layoutShape(layout, data.dim, data.image);
    if (want && sameShape(shape, want)) return layout;
  }
  return null;
}

/**
 * Reads a tfjs model's files, fills the denoiser spec's open fields (spec, then trajlab-model.json, then defaults) and
 * checks the model fits the data: every problem is a SpecError naming the field and the file.
 */
export function resolveTfjsModel(spec: TfjsSpec, baseDir: string, field: string, data: Pick<Dataset, 'dim' | 'image'>): ResolvedModel {
  const { dir, file } = modelLocation(spec.uri, baseDir, `${field}.uri`);
  let info: ModelInfo;
  let split: ReturnType<typeof splitInputs>;
  try {
    info = inspectLocalModel(dir, file);
    split = splitInputs(info.inputs, info.where);
  } catch (err) {
    if (err instanceof ModelFileError) throw new SpecError(`${field}.uri`, err.message);
    throw err;
  }
  const meta = info.metadata;
  const parameterization = spec.parameterization ?? meta?.parameterization;
  if (!parameterization) throw new SpecError(`${field}.parameterization`, `required: ${info.where} has no trajlab-model.json saying what the network predicts (edm, eps, x0 or v)`);
  const noiseInput = spec.noiseInput ?? meta?.noiseInput ?? (split.noise ? 'edm' : 'none');
  if ((noiseInput === 'none') !== (split.noise === null)) {
    throw new SpecError(`${field}.noiseInput`, split.noise ? `is none but ${info.where} has a noise-level input '${split.noise.name}'` : `is ${noiseInput} but ${info.where} has no noise-level input (use none)`);
  }
  const shape = split.data.shape.slice(1);
  if (shape.some((d) => d === null)) throw new SpecError(`${field}.uri`, `${info.where}: data input '${split.data.name}' has shape [${split.data.shape.join(', ')}]; every dimension but the batch must be fixed`);
  const layout = spec.layout ?? meta?.layout ?? inferLayout(shape as number[], data);
  const want = layout ? layoutShape(layout, data.dim, data.image) : null;
  if (!layout || !want || !sameShape(shape, want)) {
    const dataDesc = data.image ? `${data.image.height}x${data.image.width}x${data.image.channels} images (dim ${data.dim})` : `vectors of dim ${data.dim}`;
    throw new SpecError(
      `${field}.uri`,
      `${info.where}: the model's data input '${split.data.name}' has shape [${split.data.shape.map((d) => d ?? 'batch').join(', ')}], which does not fit the study data (${dataDesc}${layout ? `, layout ${layout}` : ''})`,
    );
  }
  Object.assign(spec, { parameterization, noiseInput, layout, sigmaData: spec.sigmaData ?? meta?.sigmaData ?? 0.5 });
  return { uri: spec.uri, dir, file, contentHash: info.contentHash, format: info.format, weights: info.weights, trainedOn: meta?.dataset.contentHash };
}
