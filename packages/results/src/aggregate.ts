import type { Table } from 'apache-arrow';
import { ArrowFileError, buildTable, makeSchema, readIpcFile, toIpcFile, type ColumnData, type FileMetadata } from './arrow.js';
import { CURVE_METRICS, CURVES_COLUMNS, STAT_SUFFIXES, SUMMARY_COLUMNS, SUMMARY_METRICS } from './schemas.js';
import { RunningStats } from './stats.js';

/** What the aggregator needs to know of one config. */
export interface AggregateConfig {
  configId: string;
  solver: string;
  schedule: string;
  steps: number;
  role: 'study' | 'reference';
  nfe: number;
  /** Object keys of the config's shards, in sample order (so results do not depend on shard size). */
  samplesKeys: string[];
  stepsKeys: string[];
}

/** The merged outputs. */
export interface AggregateResult {
  summary: Uint8Array;
  curves: Uint8Array;
  summaryRows: number;
  curvesRows: number;
}

function numericColumn(table: Table, name: string, file: string): ArrayLike<number | null> {
  const col = table.getChild(name);
  if (!col) throw new ArrowFileError(file, `missing column '${name}' (not a shard of the expected kind?)`);
  return col.toArray() as ArrayLike<number | null>;
}

/**
 * Values of a nullable column as numbers with NaN for null. Float64, Float32 and Int32 chunks are copied from their
 * buffers (the typed arrays' own conversion) and their nulls set from the validity bitmaps (Vector.get dispatches
 * through a visitor for every value); any other type through get.
 */
function withNulls(table: Table, name: string, file: string): Float64Array {
  const col = table.getChild(name);
  if (!col) throw new ArrowFileError(file, `missing column '${name}' (not a shard of the expected kind?)`);
  const out = new Float64Array(col.length);
  let at = 0;
  for (const data of col.data) {
    const values: unknown = data.values;
    if (values instanceof Float64Array || values instanceof Float32Array || values instanceof Int32Array) {
      // a chunk's values start at its first row; its validity bits at bit `offset` of the bitmap (as Data.getValid)
      out.set(values.subarray(0, data.length), at);
      if (data.nullCount > 0) setNulls(out, at, data.length, data.nullBitmap, data.offset);
    } else {
      for (let i = 0; i < data.length; i++) {
        const v = col.get(at + i) as number | null;
        out[at + i] = v === null ? Number.NaN : v;
      }
    }
    at += data.length;
  }
  return out;
}

/** NaN in out[at + i] for each of `length` rows whose bit `offset + i` of `bitmap` is clear (a null). */
function setNulls(out: Float64Array, at: number, length: number, bitmap: Uint8Array, offset: number): void {
  for (let i = 0; i < length; i++) {
    const bit = offset + i;
    if (!((bitmap[bit >> 3]! >> (bit & 7)) & 1)) out[at + i] = Number.NaN;
  }
}

/** The quantiles of the p05, p50 and p95 columns. */
const QUANTILES = [0.05, 0.5, 0.95] as const;

function statsColumns(prefixes: readonly string[], stats: RunningStats[][]): Record<string, ColumnData> {
  const out: Record<string, ColumnData> = {};
  prefixes.forEach((m, k) => {
    // the three quantiles of each statistic at once (its sketch's buckets are sorted once)
    const quantiles = stats.map((row) => row[k]!.quantiles(QUANTILES));
    for (const s of STAT_SUFFIXES) {
      out[`${m}_${s}`] = {
        values: Float64Array.from(stats, (row, i) => {
          const st = row[k]!;
          return s === 'mean' ? st.mean : s === 'std' ? st.std : quantiles[i]![s === 'p05' ? 0 : s === 'p50' ? 1 : 2]!;
        }),
      };
    }
  });
  return out;
}

/** Shard files always fetched ahead of the one being aggregated (an object store answers several requests at once). */
const READ_AHEAD_MIN = 4;
/** Shard files at most fetched ahead. */
const READ_AHEAD_MAX = 32;
/** Bytes the files fetched ahead beyond READ_AHEAD_MIN may take, at the largest size seen among files of their kind. */
const READ_AHEAD_BYTES = 64 * 2 ** 20;

/**
 * A reader of `keys` in that order that keeps the next files' requests in flight (READ_AHEAD_*), so that over HTTP the
 * aggregation waits for one round trip at the start rather than one per file; small files (a shard's samples, short
 * trajectories) are fetched up to 32 ahead, large ones 4 ahead, so the files held stay within ~64 MiB plus a few.
 */
function readInOrder(keys: string[], read: (key: string) => Promise<Uint8Array>): (key: string) => Promise<Uint8Array> {
  const pending = new Map<number, Promise<Uint8Array>>();
  /** Largest size seen per kind of file (the key's second-to-last dot-separated part: samples, steps). */
  const largest = new Map<string, number>();
  const kindOf = (key: string) => key.split('.').at(-2) ?? '';
  let position = 0;
  return (key) => {
    if (keys[position] !== key) throw new Error(`aggregation read ${key} out of order (expected ${keys[position]})`);
    let budget = READ_AHEAD_BYTES;
    for (let i = position; i < Math.min(keys.length, position + 1 + READ_AHEAD_MAX); i++) {
      // a kind not seen yet counts as large: only READ_AHEAD_MIN of them before the first arrives
      const kind = kindOf(keys[i]!);
      const estimate = largest.get(kind) ?? READ_AHEAD_BYTES / READ_AHEAD_MIN;
      if (i > position + READ_AHEAD_MIN && estimate > budget) break;
      budget -= estimate;
      if (pending.has(i)) continue;
      const request = read(keys[i]!);
      request.then((bytes) => largest.set(kind, Math.max(largest.get(kind) ?? 0, bytes.length)), () => {}); // a failure is reported when awaited
      pending.set(i, request);
    }
    const request = pending.get(position)!;
    pending.delete(position++);
    return request;
  };
}

/** The two kinds of shard file the aggregation folds, in the order it folds each config's: samples, then steps. */
export const FOLD_KINDS = ['samples', 'steps'] as const;
export type FoldKind = (typeof FOLD_KINDS)[number];

/** Per-step accumulators of one config's curves. */
interface StepStats {
  sigma: number;
  nfe: number;
  count: number;
  stats: RunningStats[];
}

/**
 * The aggregation's state: every config's statistics so far, fed one shard file at a time in each config's shard order
 * (samples and steps files each in their own order; configs are independent). Feeding the same files in the same order
 * gives the same bits whether they arrive all at once at the end or while the study still runs (the aggregator folds
 * shards as they finish, see services/aggregator).
 */
export class StudyFold {
  private readonly summaryStats: RunningStats[][];
  private readonly summaryCounts: number[];
  private readonly byStep: Map<number, StepStats>[];
  private readonly folded: Record<FoldKind, number>[];

  constructor(readonly configs: AggregateConfig[]) {
    this.summaryStats = configs.map(() => SUMMARY_METRICS.map(() => new RunningStats()));
    this.summaryCounts = configs.map(() => 0);
    this.byStep = configs.map(() => new Map());
    this.folded = configs.map(() => ({ samples: 0, steps: 0 }));
  }

  /** Config `ci`'s files of this kind, in sample order. */
  private keysOf(ci: number, kind: FoldKind): string[] {
    const c = this.configs[ci]!;
    return kind === 'samples' ? c.samplesKeys : c.stepsKeys;
  }

  /** Config `ci`'s next file of this kind to fold, or undefined once all of them are. */
  nextKey(ci: number, kind: FoldKind): string | undefined {
    return this.keysOf(ci, kind)[this.folded[ci]![kind]];
  }

  /** Config `ci`'s files of this kind not folded yet, from the next one on, at most `limit` of them. */
  upcomingKeys(ci: number, kind: FoldKind, limit: number): string[] {
    const from = this.folded[ci]![kind];
    return this.keysOf(ci, kind).slice(from, from + Math.max(0, limit));
  }

  /** Folds `bytes` as config `ci`'s next file of this kind (the one nextKey names). */
  add(ci: number, kind: FoldKind, bytes: Uint8Array): void {
    const key = this.nextKey(ci, kind);
    if (key === undefined) throw new Error(`config ${this.configs[ci]?.configId}: every ${kind} file is folded already`);
    if (kind === 'samples') this.addSamples(ci, bytes, key);
    else this.addSteps(ci, bytes, key);
    this.folded[ci]![kind]++;
  }

  private addSamples(ci: number, bytes: Uint8Array, key: string): void {
    const t = readIpcFile(bytes, key);
    const stats = this.summaryStats[ci]!;
    const cols = SUMMARY_METRICS.map((m) => withNulls(t, m, key));
    for (let k = 0; k < cols.length; k++) for (let r = 0; r < t.numRows; r++) stats[k]!.add(cols[k]![r]!);
    this.summaryCounts[ci]! += t.numRows;
  }

  private addSteps(ci: number, bytes: Uint8Array, key: string): void {
    const t = readIpcFile(bytes, key);
    const byStep = this.byStep[ci]!;
    const step = numericColumn(t, 'step', key);
    const sigma = numericColumn(t, 'sigma', key);
    const nfe = numericColumn(t, 'nfe', key);
    const cols = CURVE_METRICS.map((m) => withNulls(t, m, key));
    for (let r = 0; r < t.numRows; r++) {
      const s = step[r] as number;
      let entry = byStep.get(s);
      if (!entry) {
        entry = { sigma: sigma[r] as number, nfe: nfe[r] as number, count: 0, stats: CURVE_METRICS.map(() => new RunningStats()) };
        byStep.set(s, entry);
      }
      entry.count++;
      for (let k = 0; k < cols.length; k++) entry.stats[k]!.add(cols[k]![r]!);
    }
  }

  /** Shard files folded so far (samples and steps). */
  foldedFiles(): number {
    return this.folded.reduce((n, f) => n + f.samples + f.steps, 0);
  }

  /** The keys not folded yet, config by config, in FOLD_KINDS order: what aggregateShards still reads. */
  remainingKeys(): string[] {
    return this.configs.flatMap((_, ci) => FOLD_KINDS.flatMap((kind) => this.keysOf(ci, kind).slice(this.folded[ci]![kind])));
  }

  /** summary.arrow and curves.arrow of everything folded (call once every file is). */
  finish(meta: FileMetadata): AggregateResult {
    const configs = this.configs;
    const curve = { configIdx: [] as number[], step: [] as number[], sigma: [] as number[], nfe: [] as number[], count: [] as number[], stats: [] as RunningStats[][] };
    for (const [ci, byStep] of this.byStep.entries()) {
      for (const s of [...byStep.keys()].sort((a, b) => a - b)) {
        const e = byStep.get(s)!;
        curve.configIdx.push(ci);
        curve.step.push(s);
        curve.sigma.push(e.sigma);
        curve.nfe.push(e.nfe);
        curve.count.push(e.count);
        curve.stats.push(e.stats);
      }
    }
    const summaryStats = this.summaryStats;
    const summaryCounts = this.summaryCounts;
    const summarySchema = makeSchema(SUMMARY_COLUMNS, 1, meta);
    const summary = buildTable(SUMMARY_COLUMNS, summarySchema, configs.length, 1, {
      config_id: { values: configs.map((c) => c.configId) },
      solver: { values: configs.map((c) => c.solver) },
      schedule: { values: configs.map((c) => c.schedule) },
      steps: { values: Int32Array.from(configs, (c) => c.steps) },
      role: { values: configs.map((c) => c.role) },
      nfe: { values: Int32Array.from(configs, (c) => c.nfe) },
      samples: { values: Int32Array.from(summaryCounts) },
      ...statsColumns(SUMMARY_METRICS, summaryStats),
    });

    const rows = curve.step.length;
    const cfgOf = (i: number) => configs[curve.configIdx[i]!]!;
    const curvesSchema = makeSchema(CURVES_COLUMNS, 1, meta);
    const curves = buildTable(CURVES_COLUMNS, curvesSchema, rows, 1, {
      config_id: { values: Array.from({ length: rows }, (_, i) => cfgOf(i).configId) },
      solver: { values: Array.from({ length: rows }, (_, i) => cfgOf(i).solver) },
      schedule: { values: Array.from({ length: rows }, (_, i) => cfgOf(i).schedule) },
      steps: { values: Int32Array.from({ length: rows }, (_, i) => cfgOf(i).steps) },
      step: { values: Int32Array.from(curve.step) },
      sigma: { values: Float64Array.from(curve.sigma) },
      nfe: { values: Int32Array.from(curve.nfe) },
      count: { values: Int32Array.from(curve.count) },
      ...statsColumns(CURVE_METRICS, curve.stats),
    });
    return { summary: toIpcFile(summary), curves: toIpcFile(curves), summaryRows: configs.length, curvesRows: rows };
  }
}

/**
 * Streams every shard of every config once (a few shards in memory at a time: the one read and those in flight)
 * into summary.arrow (one row per config) and curves.arrow (one row per config and step). `read` fetches an object by
 * key. With `fold`, the files it has folded already are not read again: the others are folded into it.
 */
export async function aggregateShards(configs: AggregateConfig[], readObject: (key: string) => Promise<Uint8Array>, meta: FileMetadata, fold = new StudyFold(configs)): Promise<AggregateResult> {
  if (fold.configs !== configs) throw new Error('aggregateShards: the fold belongs to other configs');
  const read = readInOrder(fold.remainingKeys(), readObject);
  for (const ci of configs.keys()) {
    for (const kind of FOLD_KINDS) for (let key = fold.nextKey(ci, kind); key !== undefined; key = fold.nextKey(ci, kind)) fold.add(ci, kind, await read(key));
  }
  return fold.finish(meta);
}
