import { RememberingStore, type ObjectStore } from '@trajlab/storage';
import { sha256Hex, studyKeys, type PlannedConfig, type ShardPlan } from '@trajlab/study';
import type { StudyContext } from './context.js';
import { runShard, type ShardOutput } from './shard.js';
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

/** Options of executeShard. */
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
   * The caller found no complete files for this shard just before (a worker checks in its main process, whose event
   * loop no computation holds up): the check is not made again. @defaultValue false
   */
  checked?: boolean;
  /** This process's shard writes under way (see ShardWrites). @defaultValue none: a reference shard still uploading is computed again */
  writes?: ShardWrites;
}

/**
 * Executes one shard idempotently: reuses complete files (matching manifest), otherwise makes sure the reference
 * config's shard for the same samples exists (computing it if needed: deterministic, so concurrent writers write the
 * same bytes), runs the shard and writes it. Shared by the embedded run and the workers.
 */
export async function executeShard(ctx: StudyContext, store: ObjectStore, config: PlannedConfig, shard: ShardPlan, opts: ExecuteShardOptions = {}): Promise<ShardExecution> {
  const studyId = ctx.study.studyId;
  const existing = opts.checked ? null : await existingShard(store, studyId, config, shard);
  if (existing) return { manifest: existing, reused: true, computedReference: false };
  const exclusive = opts.exclusive ?? ((compute) => compute());
  const computed = await exclusive(async () => {
    const reference = ctx.plan.configs.find((c) => c.role === 'reference');
    let referenceFinals: Float32Array | undefined;
    let computedReference = false;
    if (reference && reference !== config) {
      const refShard = reference.shards.find((s) => s.first === shard.first && s.count === shard.count);
      if (!refShard) throw new Error(`no reference shard covers samples ${shard.first}..${shard.first + shard.count - 1}`);
      const finalsKey = studyKeys.shard(studyId, reference.configId, refShard.name, 'samples');
      const location = store.locate(finalsKey);
      referenceFinals = verifiedFinals.get(location);
      if (!referenceFinals) {
        // not kept here (a reference shard this process computed is, so this waits only for one whose finals were
        // dropped since): its upload by this process, if under way, settles first
        await opts.writes?.settled(studyKeys.manifest(studyId, reference.configId, refShard.name));
        // the reference's samples file, read to check its hash, is read again for its final samples: from memory
        const refStore = new RememberingStore(store, { keep: (key) => key === finalsKey });
        if (!(await existingShard(refStore, studyId, reference, refShard))) {
          await writeShard(refStore, studyId, reference, refShard, await runShard(ctx, reference, refShard));
          computedReference = true;
        }
        referenceFinals = await readFinals(refStore, finalsKey);
        verifiedFinals.set(location, referenceFinals);
      }
    }
    const stats = ctx.trainingSet?.pruning ? { ...ctx.trainingSet.pruningStats } : null;
    const out = await runShard(ctx, config, shard, { referenceFinals, onPoint: opts.onPoint });
    const after = ctx.trainingSet?.pruningStats;
    const pruning = stats && after ? { rows: after.rows - stats.rows, pointsKept: after.pointsKept - stats.pointsKept, pointsTotal: after.pointsTotal - stats.pointsTotal } : undefined;
    return { out, pruning, computedReference };
  });
  // a reference shard's finals, for the other configs' shards over the same samples in this process
  if (config.role === 'reference') {
    const location = store.locate(studyKeys.shard(studyId, config.configId, shard.name, 'samples'));
    verifiedFinals.set(location, finalsOf(computed.out.samples, location));
  }
  // the upload runs outside the lock: the next shard computes meanwhile
  const write = writeShard(store, studyId, config, shard, computed.out, computed.pruning);
  opts.writes?.track(studyKeys.manifest(studyId, config.configId, shard.name), write);
  return { manifest: await write, reused: false, computedReference: computed.computedReference };
}
