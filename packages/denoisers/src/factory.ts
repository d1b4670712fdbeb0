import type { Dataset } from '@trajlab/datasets';
import { fitGaussian, gaussianDenoiser, gmmDenoiser } from './analytic.js';
import { TrainingSet } from './training-set.js';
import { networkDenoiser, type Layout, type Network, type NoiseInput, type Parameterization } from './network.js';
import type { Denoiser } from './types.js';

/** Denoiser section of a study spec (resolved). */
export type DenoiserSpec =
  | {
      kind: 'optimal';
      /** Training points per chunk of the streamed softmax. @defaultValue 16384 */
      chunkSize?: number;
      /** Certified pruning (see TrainingSetOptions.pruning). @defaultValue off */
      pruning?: { rank?: number; tolerance?: number };
    }
  | {
      kind: 'gaussian';
      /**
       * `analytic`: the generating Gaussian of a synthetic `gaussian` dataset; `fit`: a Gaussian fitted to the training
       * set (mean and covariance); `auto`: analytic when the dataset has one, else fit. @defaultValue 'auto'
       */
      source?: 'auto' | 'analytic' | 'fit';
    }
  | { kind: 'gmm' }
  | {
      kind: 'tfjs';
      /** Model location (for messages). */
      uri: string;
      /** Filled in by study resolution (from the spec, the model's metadata or defaults). */
      parameterization?: Parameterization;
      sigmaData?: number;
      noiseInput?: NoiseInput;
      layout?: Layout;
      /** @defaultValue 256 */
      maxBatch?: number;
    };

/** A denoiser that cannot be built from the spec and dataset; the message names the field. */
export class DenoiserSpecError extends Error {
  constructor(
    readonly field: string,
    /** The problem, without the field. */
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
    this.name = 'DenoiserSpecError';
  }
}

/** Checks that a denoiser spec can be built on this dataset, without touching the device. */
export function checkDenoiserSpec(spec: DenoiserSpec, dataset: Pick<Dataset, 'analytic' | 'kind'>, field: string): void {
  if (spec.kind === 'gmm' && dataset.analytic?.kind !== 'gmm') {
    throw new DenoiserSpecError(`${field}.kind`, `'gmm' needs a dataset of kind 'gmm' (its exact mixture); dataset is '${dataset.kind}'`);
  }
  if (spec.kind === 'gaussian' && spec.source === 'analytic' && dataset.analytic?.kind !== 'gaussian') {
    throw new DenoiserSpecError(`${field}.source`, `'analytic' needs a dataset of kind 'gaussian'; dataset is '${dataset.kind}' (use source: fit)`);
  }
}

/**
 * Builds a denoiser on the active backend. The optimal denoiser shares `trainingSet` when given; a `tfjs` denoiser wraps
 * `network` (loaded by @trajlab/models).
 */
export function createDenoiser(spec: DenoiserSpec, dataset: Dataset, field: string, trainingSet?: TrainingSet, network?: Network): Denoiser {
  checkDenoiserSpec(spec, dataset, field);
  switch (spec.kind) {
    case 'optimal': {
      const ts = trainingSet ?? new TrainingSet(dataset.points, dataset.n, dataset.dim, { chunkSize: spec.chunkSize, pruning: spec.pruning });
      return {
        kind: 'optimal',
        dim: dataset.dim,
        denoise: (x, t) => ts.denoise(x, t),
        flopsPerEval: 4 * dataset.n * dataset.dim + 6 * dataset.n,
        paramBytes: ts.deviceBytes,
        describe: `optimal(n=${dataset.n}, dim=${dataset.dim}, chunk=${ts.chunkSize}${ts.pruning ? `, pruning rank ${ts.pruning.rank} tol ${ts.pruning.tolerance}` : ''})`,
        dispose: () => {
          if (!trainingSet) ts.dispose();
        },
      };
    }
    case 'gaussian': {
      const useAnalytic = spec.source !== 'fit' && dataset.analytic?.kind === 'gaussian';
      const g = useAnalytic ? (dataset.analytic as Extract<Dataset['analytic'], { kind: 'gaussian' }>) : fitGaussian(dataset.points, dataset.n, dataset.dim);
      const d = gaussianDenoiser(g);
      return { ...d, describe: `${d.describe}, ${useAnalytic ? 'analytic' : 'fitted to the training set'}` };
    }
    case 'gmm':
      return gmmDenoiser(dataset.analytic as Extract<Dataset['analytic'], { kind: 'gmm' }>);
    case 'tfjs': {
      const { parameterization, sigmaData, noiseInput, layout } = spec;
      if (!network || !parameterization || sigmaData === undefined || !noiseInput || !layout) {
        throw new DenoiserSpecError(field, `the tfjs model ${spec.uri} must be loaded and its spec resolved before the denoiser is built`);
      }
      try {
        return networkDenoiser(network, { parameterization, sigmaData, noiseInput, layout, dim: dataset.dim, image: dataset.image, maxBatch: spec.maxBatch });
      } catch (err) {
        throw new DenoiserSpecError(field, `${spec.uri}: ${(err as Error).message}`);
      }
    }
  }
}
