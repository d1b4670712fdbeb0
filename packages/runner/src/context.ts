import type { Dataset } from '@trajlab/datasets';
import { createDenoiser, DEFAULT_CHUNK_SIZE, TrainingSet, type Denoiser, type Network } from '@trajlab/denoisers';
import { loadNetwork } from '@trajlab/models';
import type { FileMetadata } from '@trajlab/results';
import { dataCacheDir, type LoadedData, type ResolvedModel, type ResolvedStudy, type StudyPlan } from '@trajlab/study';
import { join } from 'node:path';
import { TRAJLAB_VERSION } from '@trajlab/core';

/** Everything a shard needs, built once per process and reused across shards. */
export interface StudyContext {
  study: ResolvedStudy;
  plan: StudyPlan;
  dataset: Dataset;
  /** The study's training set on the device (KDE gain, nearest neighbours, and the optimal denoiser when it uses it). */
  trainingSet: TrainingSet | null;
  denoiser: Denoiser;
  compare: Denoiser | null;
  /** Schema metadata shared by every file of the study. */
  meta: FileMetadata;
  dispose(): void;
}

const loadModel = (m: ResolvedModel | undefined): Promise<Network | undefined> => (m ? loadNetwork(m.dir, m.file, m.contentHash) : Promise.resolve(undefined));

/**
 * Builds the device state of a study: training set, denoiser and compare denoiser (tfjs models are loaded once per
 * process and shared between studies and between denoiser and compare).
 */
export async function createContext(study: ResolvedStudy, data: LoadedData, plan: StudyPlan): Promise<StudyContext> {
  const { spec } = study;
  const [denoiserNet, compareNet] = await Promise.all([loadModel(study.models.denoiser), loadModel(study.models.compare)]);
  const sharesTraining = spec.denoiser.kind === 'optimal' && !spec.denoiser.dataset;
  const needsTraining = spec.metrics.kde || spec.metrics.nearest || sharesTraining;
  const chunkSize = spec.denoiser.kind === 'optimal' ? spec.denoiser.chunkSize : DEFAULT_CHUNK_SIZE;
  const pruning = spec.denoiser.kind === 'optimal' && sharesTraining ? spec.denoiser.pruning : undefined;
  // certified pruning's tables are kept in the data cache, beside the decoded datasets: the next process over the same
  // points reads them instead of computing them
  const pruningCache = pruning ? { dir: join(dataCacheDir(), 'pruning'), contentHash: data.dataset.contentHash } : undefined;
  const trainingSet = needsTraining ? new TrainingSet(data.dataset.points, data.dataset.n, data.dataset.dim, { chunkSize, pruning, pruningCache }) : null;
  // the optimal denoiser keeps its latest logits so the KDE gain and the nearest neighbours need no extra pass
  if (trainingSet && sharesTraining && (spec.metrics.kde || spec.metrics.nearest)) trainingSet.cacheLogits = true;
  const denoiser = createDenoiser(spec.denoiser, data.denoiser, 'denoiser', sharesTraining ? (trainingSet ?? undefined) : undefined, denoiserNet);
  const compare = spec.compare && data.compare ? createDenoiser(spec.compare, data.compare, 'compare', undefined, compareNet) : null;
  return {
    study,
    plan,
    dataset: data.dataset,
    trainingSet,
    denoiser,
    compare,
    meta: { version: TRAJLAB_VERSION, studyId: study.studyId, spec: study.canonical },
    dispose() {
      denoiser.dispose();
      compare?.dispose();
      trainingSet?.dispose();
    },
  };
}
