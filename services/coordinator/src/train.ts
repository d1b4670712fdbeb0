import { backendFromEnv, describeBackend, initBackend } from '@trajlab/backend';
import type { TrainProgress } from '@trajlab/models/training';
import { openStore } from '@trajlab/storage';
import { prefetchSpecFile, resolveTrainFile } from '@trajlab/study';
import { join } from 'node:path';
import { formatDuration } from './format.js';

/** Options of `trajlab train`. */
export interface TrainCommandOptions {
  /** Where the model goes (directory or s3://bucket/prefix). @defaultValue <outRoot>/models/<name> */
  out?: string;
  /** Output root used when `out` is not given. */
  outRoot: string;
  /** Continue from the latest checkpoint under the output. @defaultValue false */
  resume: boolean;
  /** Replace an existing model at the output. @defaultValue false */
  force: boolean;
  /** No progress lines. @defaultValue false */
  quiet: boolean;
}

/** A model already exists where `trajlab train` would write (user input: exit code 2). */
export class ModelExistsError extends Error {
  override name = 'ModelExistsError';
}

function progressLine(p: TrainProgress): string {
  const eta = p.stepsPerSecond > 0 ? ((p.steps - p.step) / p.stepsPerSecond) * 1000 : Number.NaN;
  return `step ${String(p.step).padStart(String(p.steps).length)}/${p.steps}  loss ${p.loss.toFixed(4)}  ${p.stepsPerSecond.toFixed(1)} steps/s  ETA ${Number.isFinite(eta) ? formatDuration(eta) : '?'}`;
}

/** `trajlab train <spec>`: trains a denoiser and writes a tfjs model + trajlab-model.json. Returns the model location. */
export async function trainCommand(specPath: string, o: TrainCommandOptions): Promise<string> {
  const choice = backendFromEnv();
  await prefetchSpecFile(specPath);
  const t = resolveTrainFile(specPath);
  const out = o.out ?? join(o.outRoot, 'models', t.spec.name);
  const store = openStore(out);
  if (!o.resume && !o.force && (await store.exists('model.json'))) {
    throw new ModelExistsError(`${store.locate('model.json')} already exists; pass --force to replace it or --resume to continue from its checkpoints`);
  }
  const backend = await initBackend(choice);
  // the training code (tfjs-layers) is loaded only by this command
  const { trainDenoiser } = await import('@trajlab/models/training');
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const tty = Boolean(process.stderr.isTTY) && !o.quiet;
  log(`backend: ${describeBackend(backend)}`);
  log(`training ${t.spec.name}: ${JSON.stringify(t.options.architecture)} on ${t.dataset.source} (n=${t.dataset.n}, dim=${t.dataset.dim}), ${t.options.steps} steps of ${t.options.batchSize}, ${t.options.parameterization} parameterization`);
  const res = await trainDenoiser(t.dataset, t.options, store, {
    resume: o.resume,
    onLog: (p) => {
      if (o.quiet) return;
      if (tty) process.stderr.write(`\r${progressLine(p)}   `);
      else log(progressLine(p));
    },
    onCheckpoint: (step, location) => {
      if (!o.quiet) process.stderr.write(`${tty ? '\n' : ''}checkpoint at step ${step}: ${location}\n`);
    },
  });
  if (tty) process.stderr.write('\n');
  if (res.startStep > 0) log(`resumed from the checkpoint at step ${res.startStep}`);
  process.stdout.write(`model     ${res.location}\n`);
  process.stdout.write(`metadata  ${store.locate('trajlab-model.json')}\n`);
  process.stdout.write(`loss      ${res.metadata.training.finalLoss.toFixed(4)} (mean of the last ${t.options.logEvery} steps), sigmaData ${res.metadata.sigmaData}\n`);
  return res.location;
}
