import { activeBackend, shareNativeThreads } from '@trajlab/backend';
import { openStore } from '@trajlab/storage';
import { dispatchOrder, planStudy, prefetchSpecFile, resolveStudyFile, studyKeys, type LoadedData, type PlannedConfig, type ResolvedStudy, type ShardPlan, type StudyPlan } from '@trajlab/study';
import { createContext, type StudyContext } from './context.js';
import { aggregateFinishedStudy, EarlyFolds } from './early-folds.js';
import { writeReport } from '@trajlab/report';
import { shardsPerBatch } from './batching.js';
import { executeShards } from './execute.js';
import { computeGitsSchedules, type GitsRecord } from './gits.js';
import { runShards, ShardProcesses, type ShardWork } from './pool.js';
import { studyJson } from './study-json.js';
import { TraceRecorder } from './trace.js';

/** Progress of an embedded run. */
export interface RunProgress {
  configId: string;
  configIndex: number;
  configs: number;
  shard: string;
  /** Trajectories finished (whole shards) out of the total. */
  trajectoriesDone: number;
  trajectoriesTotal: number;
  /** Fraction of the current shard's time points done. */
  shardFraction: number;
  /** Shards reused from an earlier run (resume). */
  shardsReused: number;
  elapsedMs: number;
}

/** Options of an embedded run. */
export interface RunOptions {
  /** Output root (directory). */
  out: string;
  onProgress?: (p: RunProgress) => void;
  /** Log lines (backend, resume, paths). @defaultValue none */
  log?: (line: string) => void;
  /** Processes that run shards (each single-threaded on wasm). 1 runs everything in this process. @defaultValue 1 */
  workers?: number;
  /** The spec already resolved from `specPath` (the CLI validates first), so the data is not loaded twice. @defaultValue resolved here */
  resolved?: { study: ResolvedStudy; data: LoadedData };
  /**
   * Shard processes the caller already started for `specPath` and `out` (the CLI starts them before it validates the
   * spec, so that their start-up overlaps its own), used instead of `workers - 1` new ones (none if there are none
   * left); the caller closes them. @defaultValue started here
   */
  processes?: ShardProcesses;
  /**
   * Records the run's timeline (`trajlab run --trace`): this process's spans, and those of the shard processes it
   * starts itself (those of `processes` send theirs if they were started with tracing). @defaultValue none recorded
   */
  trace?: TraceRecorder;
}

/** Where an embedded run wrote its outputs. */
export interface RunResult {
  studyId: string;
  plan: StudyPlan;
  studyDir: string;
  summary: string;
  curves: string;
  /** The self-contained HTML report. */
  report: string;
  shardsComputed: number;
  shardsReused: number;
  /**
   * Shard files (samples and steps) folded into the aggregation while shards still ran, out of two per shard: only
   * with shard processes (`workers` > 1), else 0.
   */
  shardFilesFoldedEarly: number;
  elapsedMs: number;
}

/**
 * Runs a whole study in this process (no Redis, no S3): every shard of every config in plan order, skipping shards
 * whose files already exist with a matching manifest, then the aggregation. The same shard code the workers run.
 */
export async function runStudyEmbedded(specPath: string, opts: RunOptions): Promise<RunResult> {
  const started = Date.now();
  let resolved = opts.resolved;
  if (!resolved) {
    await prefetchSpecFile(specPath);
    resolved = resolveStudyFile(specPath);
  }
  const plan = planStudy(resolved.study);
  for (const note of plan.notes) opts.log?.(`note: ${note}`);
  if (opts.processes) return runStudy(opts, resolved, plan, opts.processes.executors.length ? opts.processes : null, started);
  // the other workers - 1 processes start now, so their start-up overlaps with this process's own
  const processCount = Math.min(opts.workers ?? 1, plan.totals.jobs) - 1;
  const processes = processCount > 0 ? new ShardProcesses(processCount, specPath, opts.out, [], opts.trace) : null;
  try {
    return await runStudy(opts, resolved, plan, processes, started);
  } finally {
    processes?.close();
  }
}

/** The embedded run proper, with this process and the already started shard processes (if any). */
async function runStudy(opts: RunOptions, resolved: { study: ResolvedStudy; data: LoadedData }, plan: StudyPlan, processes: ShardProcesses | null, started: number): Promise<RunResult> {
  const { study, data } = resolved;
  // shards computed together as one batch of the denoiser (TRAJLAB_SHARD_BATCH checked before anything is written)
  const batchSize = shardsPerBatch(study, plan);
  const store = openStore(opts.out);
  const log = opts.log ?? (() => {});
  const backend = activeBackend();
  const trace = opts.trace ?? new TraceRecorder(false);
  let ctx: StudyContext | null = null;
  let gits: GitsRecord[] = [];
  // models are loaded (and probed) before anything is written, so a model that cannot run leaves no trace
  // the device state, built once, when first needed
  const context = async () => (ctx ??= await trace.span('context', 'start-up', () => createContext(study, data, plan)));
  if (study.models.denoiser || study.models.compare) await context();
  if (plan.configs.some((c) => c.gits)) {
    ctx = await context();
    gits = await computeGitsSchedules(ctx, plan.configs);
    for (const g of gits) log(`gits ${g.configId}: sigmas ${g.sigmas.map((v) => v.toPrecision(4)).join(', ')}`);
  }
  await store.put(studyKeys.studyJson(study.studyId), studyJson(study, plan, backend, { status: 'running', startedAt: new Date(started).toISOString(), gits }));
  let computed = 0;
  let reused = 0;
  let done = 0;
  const total = plan.totals.trajectories;
  // The reference runs first (every other shard reads its final samples for ODE-Jump and global errors), then the
  // configs with the longest shards (dispatchOrder)
  const indexOf = new Map(plan.configs.map((c, i) => [c, i]));
  const order = dispatchOrder(plan.configs).map((c) => [indexOf.get(c)!, c] as const);
  const progressOf = (ci: number, config: PlannedConfig, shard: ShardPlan, shardFraction: number) =>
    opts.onProgress?.({
      configId: config.configId,
      configIndex: ci,
      configs: plan.configs.length,
      shard: shard.name,
      trajectoriesDone: done,
      trajectoriesTotal: total,
      shardFraction,
      shardsReused: reused,
      elapsedMs: Date.now() - started,
    });
  // With shard processes, this process folds each finished shard into the aggregation while the others still compute
  // (as the aggregator service does), so that the study's end waits only for the last shards' folding. Folding happens
  // between this process's own sampling steps: the shards it would have run meanwhile go to the other processes.
  const early = processes ? new EarlyFolds({ openStore: () => store, maxStudies: 1, trace }) : null;
  try {
    if (processes) {
      // this process works too (it already holds the study); the forked ones join when ready
      const localCtx = await context();
      const work = order.flatMap(([, config]) => config.shards.map((shard) => ({ config, shard })));
      const local = {
        run: async (batch: ShardWork[], onProgress: (f: number) => void) => {
          const config = batch[0]!.config;
          const shards = batch.map((w) => w.shard);
          const res = await trace.batch(config.configId, shards, () => executeShards(localCtx, store, config, shards, { onPoint: (i, n) => onProgress(i / n) }));
          return res.map((r) => r.reused);
        },
        shareCores: shareNativeThreads,
      };
      await runShards(
        local,
        processes,
        work,
        (config, shard, f) => progressOf(indexOf.get(config)!, config, shard, f),
        (config, shard, wasReused) => {
          if (wasReused) reused++;
          else computed++;
          done += shard.count;
          progressOf(indexOf.get(config)!, config, shard, 1);
          early!.shardDone(study.studyId, config.configId, shard.name, opts.out);
        },
        batchSize,
      );
    } else {
      for (const [ci, config] of order) {
        for (let k = 0; k < config.shards.length; k += batchSize) {
          const batch = config.shards.slice(k, k + batchSize);
          const localCtx = await context();
          // progress is told of the batch's first shard while it computes, then of each shard as done
          const first = batch[0]!;
          const res = await trace.batch(config.configId, batch, () => executeShards(localCtx, store, config, batch, { onPoint: (i, n) => progressOf(ci, config, first, i / n) }));
          batch.forEach((shard, j) => {
            if (res[j]!.reused) reused++;
            else computed++;
            done += shard.count;
            progressOf(ci, config, shard, 1);
          });
        }
      }
    }
  } finally {
    ctx?.dispose();
  }
  if (reused > 0) log(`reused ${reused} shard(s) already written by an earlier run of this study`);
  const { store: finished, summary, curves, foldedBefore } = await trace.span('aggregation', 'aggregation', () => aggregateFinishedStudy(store, study.studyId, opts.out, early));
  const elapsedMs = Date.now() - started;
  await finished.put(
    studyKeys.studyJson(study.studyId),
    studyJson(study, plan, backend, { status: 'complete', startedAt: new Date(started).toISOString(), elapsedMs, shardsComputed: computed, shardsReused: reused, gits }),
  );
  // The report reads only the output files (study.json included), so it is written last.
  const report = await trace.span('report', 'aggregation', () => writeReport(finished, study.studyId));
  return { studyId: study.studyId, plan, studyDir: store.locate(study.studyId), summary, curves, report, shardsComputed: computed, shardsReused: reused, shardFilesFoldedEarly: foldedBefore, elapsedMs };
}
