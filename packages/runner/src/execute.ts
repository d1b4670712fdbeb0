import { RememberingStore, type ObjectStore } from '@trajlab/storage';
import { sha256Hex, studyKeys, type PlannedConfig, type ShardPlan } from '@trajlab/study';
import type { StudyContext } from './context.js';
import { concatRows, runShard, runShardBatch, type ShardOutput } from './shard.js';
import { readIpcFile } from '@trajlab/results';

/** The manifest written after a shard's files: object keys, row counts and sha256 of each file. */
export interface ShardManifest {
  studyId: string;
  configId: string;
  shard: string;
  first: number;
  count: number;
  files: { key: string; rows: number; sha256: string; bytes: number }[];
  /** With certified pruning: denoiser rows evaluated and training points kept / total over them. */
  pruning?: { rows: number; pointsKept: number; pointsTotal: number };
}

/** The shard's manifest when it exists and every file it lists exists with the listed hash; else null. */
export async function existingShard(store: ObjectStore, studyId: string, config: Pick<PlannedConfig, 'configId'>, shard: Pick<ShardPlan, 'name' | 'first' | 'count'>): Promise<ShardManifest | null> {
  const key = studyKeys.manifest(studyId, config.configId, shard.name);
  if (!(await store.exists(key))) return null;
  try {
    const m = JSON.parse(new TextDecoder().decode(await store.get(key))) as ShardManifest;
    if (m.first !== shard.first || m.count !== shard.count) return null;
    // all files at once (one round trip); a missing file fails its get like one that cannot be read: not complete
    const hashes = await Promise.all(m.files.map(async (f) => sha256Hex(await store.get(f.key))));
    if (hashes.some((h, i) => h !== m.files[i]!.sha256)) return null;
    return m;
  } catch {
    return null;
  }
}

/**
 * Writes a shard's files and its manifest, all at once (over HTTP, one round trip instead of two): a manifest is
 * trusted only with every file it lists present under its sha256 (existingShard), so one written before its files, by
 * a process that died in between, only makes the next run compute the shard again.
 */
export async function writeShard(store: ObjectStore, studyId: string, config: PlannedConfig, shard: ShardPlan, out: ShardOutput, pruning?: ShardManifest['pruning']): Promise<ShardManifest> {
  const tables = [
    ['steps', out.steps, out.rows.steps],
    ['samples', out.samples, out.rows.samples],
    ['states', out.states, out.rows.states],
  ] as const;
  const data = tables.flatMap(([table, bytes, rows]) => (bytes ? [{ key: studyKeys.shard(studyId, config.configId, shard.name, table), bytes, rows }] : []));
  const files: ShardManifest['files'] = data.map(({ key, bytes, rows }) => ({ key, rows, sha256: sha256Hex(bytes), bytes: bytes.length }));
  const manifest: ShardManifest = { studyId, configId: config.configId, shard: shard.name, first: shard.first, count: shard.count, files, pruning };
  await Promise.all([
    ...data.map(({ key, bytes }) => store.put(key, bytes)),
    store.put(studyKeys.manifest(studyId, config.configId, shard.name), new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`)),
  ]);
  return manifest;
}

/** The `final` column (x_S per sample) of a samples.arrow object, row-major [rows, dim]. */
export async function readFinals(store: ObjectStore, key: string): Promise<Float32Array> {
  return finalsOf(await store.get(key), store.locate(key));
}

/** The final samples ([rows, dim], row-major) of a samples file's bytes; `location` names it in errors. */
function finalsOf(bytes: Uint8Array, location: string): Float32Array {
  const t = readIpcFile(bytes, location);
  const col = t.getChild('final');
  if (!col) throw new Error(`${location}: no 'final' column`);
  const child = col.data[0]!.children[0]!;
  return (child.values as Float32Array).slice(child.offset, child.offset + t.numRows * (col.type as { listSize: number }).listSize);
}

/**
 * Reference final samples this process has verified (read from complete files: manifest and hashes checked) or
 * computed, by location, least recently used first, up to FINALS_CACHE_BYTES. Every other config's shard over the same
 * samples needs them: without this each one read the reference shard's files again and hashed them (in the solver zoo
 * example, ~0.23 s of ~2.9 s; over S3, three requests a shard). A reference shard is deterministic and its files are
 * written once, atomically, so the finals read once are the finals.
 */
class VerifiedFinals {
  private readonly entries = new Map<string, Float32Array>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(location: string): Float32Array | undefined {
    const finals = this.entries.get(location);
    if (finals) {
      this.entries.delete(location);
      this.entries.set(location, finals);
    }
    return finals;
  }

  set(location: string, finals: Float32Array): void {
    if (this.entries.has(location) || finals.byteLength > this.maxBytes) return;
    this.entries.set(location, finals);
    this.bytes += finals.byteLength;
    for (const [key, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(key);
      this.bytes -= old.byteLength;
    }
  }
}

/** What VerifiedFinals keeps at most: 64 MiB (640 Fashion-MNIST shards of 32 samples). */
const FINALS_CACHE_BYTES = 64 * 2 ** 20;
const verifiedFinals = new VerifiedFinals(FINALS_CACHE_BYTES);

/**
 * This process's shard writes under way, by shard: a shard that needs its reference config's shard waits for a write of
 * it that is still uploading (a process holding several shards uploads one while it computes the next) instead of
 * finding no files and computing it again.
 */
export class ShardWrites {
  private readonly pending = new Map<string, Promise<unknown>>();

  /** Records the write of `key` (a manifest key) until it settles. */
  track(key: string, write: Promise<unknown>): void {
    this.pending.set(key, write);
    const forget = () => {
      if (this.pending.get(key) === write) this.pending.delete(key);
    };
    write.then(forget, forget);
  }

  /** Resolves once no write of `key` is under way (whether it succeeded or not). */
  async settled(key: string): Promise<void> {
    await this.pending.get(key)?.catch(() => {});
  }
}

/** How a shard execution went. */
export interface ShardExecution {
  manifest: ShardManifest;
  /** True when complete files were already there (nothing computed). */
  reused: boolean;
  /** True when the reference shard of the same samples had to be computed first. */
  computedReference: boolean;
}

/** Options of executeShards. */
export interface ExecuteShardOptions {
  /** Called at every time point of the sampling with (points done, points in all). @defaultValue none */
  onPoint?: (done: number, total: number) => void;
  /**
   * Runs the compute-bound part (the reference shard when it is missing, then this shard's sampling) and resolves with
   * its result. A process that holds several shards at once passes a lock here, so that one computes while another is
   * checked or uploaded. @defaultValue runs it at once
   */
  exclusive?: <T>(compute: () => Promise<T>) => Promise<T>;
  /**
   * The caller found no complete files for these shards just before (a worker checks in its main process, whose event
   * loop no computation holds up): the check is not made again. @defaultValue false
   */
  checked?: boolean;
  /** This process's shard writes under way (see ShardWrites). @defaultValue none: a reference shard still uploading is computed again */
  writes?: ShardWrites;
}

/**
 * Executes shards of one config idempotently: reuses each shard's complete files (matching manifest); otherwise makes
 * sure the reference config's shards for the same samples exist (computing them if needed: deterministic, so
 * concurrent writers write the same bytes), computes the missing shards as one batch (runShardBatch; shard by shard
 * with certified pruning, whose counts each manifest keeps for its own shard) and writes each as it would be alone.
 * Resolves with each shard's execution, in the order given. `onPoint` counts the batch's points (with pruning, each
 * shard's in turn). Shared by the embedded run, its shard processes and the workers.
 */
export async function executeShards(ctx: StudyContext, store: ObjectStore, config: PlannedConfig, shards: readonly ShardPlan[], opts: ExecuteShardOptions = {}): Promise<ShardExecution[]> {
  const studyId = ctx.study.studyId;
  const existing = await Promise.all(shards.map((shard) => (opts.checked ? null : existingShard(store, studyId, config, shard))));
  const missing = shards.filter((_, i) => !existing[i]);
  const executions: (ShardExecution | null)[] = existing.map((manifest) => (manifest ? { manifest, reused: true, computedReference: false } : null));
  if (missing.length === 0) return executions as ShardExecution[];
  const exclusive = opts.exclusive ?? ((compute) => compute());
  const computed = await exclusive(async () => {
    let computedReference = false;
    const finals: Float32Array[] = [];
    for (const shard of missing) {
      const ref = await referenceFinalsOf(ctx, store, config, shard, opts.writes);
      computedReference ||= ref.computed;
      if (ref.finals) finals.push(ref.finals);
    }
    const referenceFinals = finals.length === 0 ? undefined : concatRows(finals);
    const pruned = ctx.trainingSet?.pruning ?? false;
    if (!pruned) return { outs: await runShardBatch(ctx, config, missing, { referenceFinals, onPoint: opts.onPoint }), pruning: missing.map(() => undefined), computedReference };
    // with pruning, one shard at a time (shardsPerBatch gives batches of one): each manifest counts the points kept
    // for its own shard; `onPoint` counts each shard's points in turn
    const outs: ShardOutput[] = [];
    const pruning: ShardManifest['pruning'][] = [];
    const dim = ctx.dataset.dim;
    for (let i = 0, row = 0; i < missing.length; row += missing[i]!.count, i++) {
      const shard = missing[i]!;
      const stats = { ...ctx.trainingSet!.pruningStats };
      outs.push((await runShardBatch(ctx, config, [shard], { referenceFinals: referenceFinals?.subarray(row * dim, (row + shard.count) * dim), onPoint: opts.onPoint }))[0]!);
      const after = ctx.trainingSet!.pruningStats;
      pruning.push({ rows: after.rows - stats.rows, pointsKept: after.pointsKept - stats.pointsKept, pointsTotal: after.pointsTotal - stats.pointsTotal });
    }
    return { outs, pruning, computedReference };
  });
  const writes = missing.map((shard, i) => {
    const out = computed.outs[i]!;
    // a reference shard's finals, for the other configs' shards over the same samples in this process
    if (config.role === 'reference') {
      const location = store.locate(studyKeys.shard(studyId, config.configId, shard.name, 'samples'));
      verifiedFinals.set(location, finalsOf(out.samples, location));
    }
    // the upload runs outside the lock: the next shard computes meanwhile
    const write = writeShard(store, studyId, config, shard, out, computed.pruning[i]);
    opts.writes?.track(studyKeys.manifest(studyId, config.configId, shard.name), write);
    return write;
  });
  const manifests = await Promise.all(writes);
  for (let i = 0, m = 0; i < shards.length; i++) if (!executions[i]) executions[i] = { manifest: manifests[m++]!, reused: false, computedReference: computed.computedReference };
  return executions as ShardExecution[];
}

/**
 * The final samples of the reference config's shard over the same samples as `shard`, for a non-reference config of a
 * study that has one (else none): kept in memory, or read from its complete files, or computed and written first when
 * it has none (`computed`).
 */
async function referenceFinalsOf(ctx: StudyContext, store: ObjectStore, config: PlannedConfig, shard: ShardPlan, writes: ShardWrites | undefined): Promise<{ finals?: Float32Array; computed: boolean }> {
  const studyId = ctx.study.studyId;
  const reference = ctx.plan.configs.find((c) => c.role === 'reference');
  if (!reference || reference === config) return { computed: false };
  const refShard = reference.shards.find((s) => s.first === shard.first && s.count === shard.count);
  if (!refShard) throw new Error(`no reference shard covers samples ${shard.first}..${shard.first + shard.count - 1}`);
  const finalsKey = studyKeys.shard(studyId, reference.configId, refShard.name, 'samples');
  const location = store.locate(finalsKey);
  const kept = verifiedFinals.get(location);
  if (kept) return { finals: kept, computed: false };
  // not kept here (a reference shard this process computed is, so this waits only for one whose finals were dropped
  // since): its upload by this process, if under way, settles first
  await writes?.settled(studyKeys.manifest(studyId, reference.configId, refShard.name));
  // the reference's samples file, read to check its hash, is read again for its final samples: from memory
  const refStore = new RememberingStore(store, { keep: (key) => key === finalsKey });
  let computed = false;
  if (!(await existingShard(refStore, studyId, reference, refShard))) {
    await writeShard(refStore, studyId, reference, refShard, await runShard(ctx, reference, refShard));
    computed = true;
  }
  const finals = await readFinals(refStore, finalsKey);
  verifiedFinals.set(location, finals);
  return { finals, computed };
}
