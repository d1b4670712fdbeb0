/**
 * A warm-up for the aggregator's process before its first study: the early fold, the aggregation and the report run
 * over a small made-up study in a temporary directory, a few times, and everything is thrown away. A fresh process
 * runs this code ~2-3x slower than a warm one (a fold of 128 shard files: 180 ms the first time, 60-90 ms after,
 * measured on a 2-core VM), and the aggregator's first study would otherwise pay for that at its end, while the study
 * waits. Needs no tensor backend: the shard files are built from made-up values, not computed.
 */
import { TRAJLAB_VERSION } from '@trajlab/core';
import { writeReport } from '@trajlab/report';
import { buildTable, makeSchema, SAMPLES_COLUMNS, STEPS_COLUMNS, toIpcFile, type ColumnData, type ColumnDef, type FileMetadata } from '@trajlab/results';
import { openStore, type ObjectStore } from '@trajlab/storage';
import { planStudy, resolveStudyText, studyKeys, type PlannedConfig, type ShardPlan } from '@trajlab/study';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aggregateFinishedStudy, EarlyFolds } from './early-folds.js';
import { configColumns } from './shard.js';
import { studyJson } from './study-json.js';
import { WARM_UP_SPEC } from './warm-up.js';

/**
 * The made-up study: WARM_UP_SPEC's data and solvers with four shards per config, so that the fold's and the report's
 * loops over shards and rows run often enough for V8 to optimise them.
 */
export const AGGREGATION_WARM_UP_SPEC = { ...WARM_UP_SPEC, name: 'aggregation-warm-up', samples: 128 } as const;

/** What an aggregation warm-up did. */
export interface AggregationWarmUpResult {
  /** Shard files folded over all rounds. */
  files: number;
  /** Wall-clock seconds it took. */
  seconds: number;
}

/**
 * Values of a column nobody reads for their meaning: a fixed sequence in (0, 1] (so norms, ratios and logs stay
 * finite), every seventh row null where the column may be null.
 */
function madeUp(def: ColumnDef, rows: number, dim: number): ColumnData {
  const n = def.kind === 'vec32' ? rows * dim : rows;
  const value = (i: number) => ((i * 7919) % 997) / 997 + 1e-3;
  const valid = def.nullable ? Uint8Array.from({ length: rows }, (_, r) => (r % 7 === 3 ? 0 : 1)) : undefined;
  switch (def.kind) {
    case 'utf8':
      return { values: new Array<string>(rows).fill(def.name) };
    case 'int32':
      return { values: Int32Array.from({ length: n }, (_, i) => i % 97), valid };
    case 'float64':
      // a float's null is NaN
      return { values: Float64Array.from({ length: n }, (_, i) => (valid && !valid[i] ? Number.NaN : value(i))) };
    case 'float32':
      return { values: Float32Array.from({ length: n }, (_, i) => (valid && !valid[i] ? Number.NaN : value(i))) };
    case 'vec32':
      return { values: Float32Array.from({ length: n }, (_, i) => value(i)), valid };
  }
}

/** A shard's samples and steps files with the config's own identity, time points and sample ids, the rest made up. */
function shardFiles(config: PlannedConfig, shard: ShardPlan, dim: number, meta: FileMetadata): { samples: Uint8Array; steps: Uint8Array } {
  const P = config.sigmas.length;
  const fileMeta = { ...meta, extra: { 'trajlab.config_id': config.configId, 'trajlab.shard': shard.name } };
  const table = (defs: ColumnDef[], rows: number, known: Record<string, ColumnData>) =>
    toIpcFile(buildTable(defs, makeSchema(defs, dim, fileMeta), rows, dim, Object.fromEntries(defs.map((d) => [d.name, known[d.name] ?? madeUp(d, rows, dim)]))));
  const rows = shard.count * P;
  return {
    samples: table(SAMPLES_COLUMNS, shard.count, {
      ...configColumns(config, shard.count),
      sample: { values: Int32Array.from({ length: shard.count }, (_, r) => shard.first + r) },
      nfe_total: { values: new Int32Array(shard.count).fill(config.nfe) },
    }),
    steps: table(STEPS_COLUMNS, rows, {
      ...configColumns(config, rows),
      sample: { values: Int32Array.from({ length: rows }, (_, j) => shard.first + Math.floor(j / P)) },
      step: { values: Int32Array.from({ length: rows }, (_, j) => j % P) },
      sigma: { values: Float64Array.from({ length: rows }, (_, j) => config.sigmas[j % P]!) },
      nfe: { values: Int32Array.from({ length: rows }, (_, j) => Math.round((config.nfe * (j % P)) / Math.max(1, P - 1))) },
    }),
  };
}

/**
 * Writes AGGREGATION_WARM_UP_SPEC's study (plan and study.json as a run writes them, shard files made up) under a temporary
 * directory, then `rounds` times folds every shard early, aggregates the rest and writes the report, as the aggregator
 * does for a study; removes the directory. @defaultValue rounds 3
 */
export async function warmUpAggregation(rounds = 3): Promise<AggregationWarmUpResult> {
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'trajlab-aggregation-warm-up-'));
  let files = 0;
  try {
    const { study, data } = resolveStudyText(JSON.stringify(AGGREGATION_WARM_UP_SPEC), 'aggregation warm-up spec', process.cwd());
    const plan = planStudy(study);
    const store: ObjectStore = openStore(dir);
    const meta: FileMetadata = { version: TRAJLAB_VERSION, studyId: study.studyId, spec: study.canonical };
    const now = new Date().toISOString();
    await store.put(studyKeys.studyJson(study.studyId), studyJson(study, plan, null, { status: 'complete', startedAt: now, completedAt: now }));
    for (const config of plan.configs) {
      for (const shard of config.shards) {
        const { samples, steps } = shardFiles(config, shard, data.dataset.dim, meta);
        await store.put(studyKeys.shard(study.studyId, config.configId, shard.name, 'samples'), samples);
        await store.put(studyKeys.shard(study.studyId, config.configId, shard.name, 'steps'), steps);
      }
    }
    for (let r = 0; r < rounds; r++) {
      const early = new EarlyFolds({ openStore: () => store, maxStudies: 1 });
      for (const config of plan.configs) for (const shard of config.shards) early.shardDone(study.studyId, config.configId, shard.name, dir);
      files += await early.caughtUp(study.studyId);
      const { store: finished } = await aggregateFinishedStudy(store, study.studyId, dir, early);
      await writeReport(finished, study.studyId);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { files, seconds: (performance.now() - t0) / 1000 };
}
