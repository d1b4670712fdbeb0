/**
 * Folding a study's shards into its aggregation while the study still runs. Whoever hears of a finished shard calls
 * shardDone (the aggregator service: BullMQ's 'completed' events of the shards queue, whose return value is the shard's
 * manifest; `trajlab run` with shard processes: each shard it is told is done), and each config's shards that are next
 * in sample order are read and folded meanwhile. When the study's aggregation comes (take), only the shards not folded
 * yet are read, so the study's end no longer waits for the whole aggregation. The files next in line are requested
 * ahead (readAhead), so that over a store with latency the folding waits for about one round trip per readAhead files
 * rather than one per file, and keeps up with the workers. The result is the same bits: each
 * config's files are folded in the same order either way (StudyFold). Anything unexpected (a study.json that cannot be
 * read, a file that does not parse) drops the study's early state, and its aggregation reads everything itself,
 * reporting the problem as it always did.
 */
import { aggregateStudy, aggregationStore, studyAggregation } from './aggregation.js';
import { FOLD_KINDS, StudyFold } from '@trajlab/results';
import type { ObjectStore } from '@trajlab/storage';
import { studyKeys } from '@trajlab/study';
import { spanStart, type TraceRecorder } from './trace.js';

/** The early state of one study. */
interface EarlyStudy {
  out: string;
  /** In front of the study's store: the report reads the folded samples again from memory. */
  store: ObjectStore;
  /** Null until study.json is read. */
  fold: StudyFold | null;
  /** Shard files known complete (their shard's job completed). */
  complete: Set<string>;
  /** Requests of complete files next in line, not folded yet (at most readAhead), by key. */
  fetched: Map<string, Promise<Uint8Array>>;
  /** The folding under way; each step folds what is next and complete. */
  work: Promise<void>;
  /** Set by `take`: the folding stops after the files already requested. */
  taken: boolean;
  failed: boolean;
  lastEvent: number;
}

/** Options of EarlyFolds. */
export interface EarlyFoldsOptions {
  /** Studies followed at once; a new one drops the one heard of least recently. @defaultValue 2 */
  maxStudies?: number;
  /** The store of an output root. */
  openStore: (out: string) => ObjectStore;
  /**
   * Complete shard files requested at most ahead of the fold, each config's next ones in sample order (their bytes
   * wait in memory for their turn: a few MiB for image-sized shards). 1 reads one file at a time. @defaultValue 8
   */
  readAhead?: number;
  /** Records each file's fold as a span (`fold`, named by the file's key): `trajlab run --trace`. @defaultValue none */
  trace?: TraceRecorder;
}

/** What a study's aggregate job gets: the fold so far and the store that read it. */
export interface EarlyAggregation {
  store: ObjectStore;
  fold: StudyFold;
}

export class EarlyFolds {
  private readonly studies = new Map<string, EarlyStudy>();
  /** Studies whose job took their state: later events (none are expected) do not start them again. */
  private readonly ended = new Set<string>();
  private readonly maxStudies: number;
  private readonly readAhead: number;

  constructor(private readonly opts: EarlyFoldsOptions) {
    this.maxStudies = opts.maxStudies ?? 2;
    const readAhead = opts.readAhead ?? 8;
    if (!Number.isInteger(readAhead) || readAhead < 1) throw new RangeError(`EarlyFolds readAhead must be an integer >= 1; got ${readAhead}`);
    this.readAhead = readAhead;
  }

  /** A shard of `studyId` finished; its files are complete under `out`. */
  shardDone(studyId: string, configId: string, shard: string, out: string): void {
    if (this.ended.has(studyId)) return;
    let s = this.studies.get(studyId);
    if (s && s.out !== out) return;
    if (!s) s = this.start(studyId, out);
    s.lastEvent = Date.now();
    s.complete.add(studyKeys.shard(studyId, configId, shard, 'samples'));
    s.complete.add(studyKeys.shard(studyId, configId, shard, 'steps'));
    const study = s;
    // requested now, while the folding may still be on an earlier file
    this.request(study);
    study.work = study.work.then(() => this.advance(study));
  }

  /**
   * Resolves once the files of every shard of `studyId` heard of so far are folded (or the folding stopped), with the
   * number of files folded; 0 for a study not followed.
   */
  async caughtUp(studyId: string): Promise<number> {
    const s = this.studies.get(studyId);
    if (!s) return 0;
    for (let work = s.work; ; work = s.work) {
      await work;
      if (work === s.work) break;
    }
    return s.fold?.foldedFiles() ?? 0;
  }

  /**
   * The early state of `studyId` for its aggregate job (writing to `out`), once the file being folded is done; null if
   * there is none (or it failed). The study is no longer followed.
   */
  async take(studyId: string, out: string): Promise<EarlyAggregation | null> {
    const s = this.studies.get(studyId);
    this.studies.delete(studyId);
    this.ended.add(studyId);
    if (this.ended.size > 1000) this.ended.delete(this.ended.values().next().value!);
    if (!s || s.out !== out) return null;
    s.taken = true;
    await s.work;
    return s.fold && !s.failed ? { store: s.store, fold: s.fold } : null;
  }

  private start(studyId: string, out: string): EarlyStudy {
    if (this.studies.size >= this.maxStudies) {
      const [oldest] = [...this.studies.entries()].sort(([, a], [, b]) => a.lastEvent - b.lastEvent)[0]!;
      const dropped = this.studies.get(oldest)!;
      dropped.taken = true;
      this.studies.delete(oldest);
    }
    const store = aggregationStore(this.opts.openStore(out));
    const s: EarlyStudy = { out, store, fold: null, complete: new Set(), fetched: new Map(), work: Promise.resolve(), taken: false, failed: false, lastEvent: Date.now() };
    s.work = studyAggregation(store, studyId).then(
      ({ configs }) => {
        s.fold = new StudyFold(configs);
      },
      () => {
        s.failed = true;
      },
    );
    this.studies.set(studyId, s);
    return s;
  }

  /**
   * Requests complete files next in line, each config's in fold order, until readAhead requests wait to be folded.
   * Only the contiguous complete files from each config's next one are requested: each will be folded as soon as its
   * turn comes, so the bytes held stay within readAhead files.
   */
  private request(s: EarlyStudy): void {
    const fold = s.fold;
    if (!fold || s.failed || s.taken) return;
    for (const ci of fold.configs.keys()) {
      for (const kind of FOLD_KINDS) {
        for (const key of fold.upcomingKeys(ci, kind, this.readAhead)) {
          if (s.fetched.size >= this.readAhead) return;
          if (!s.complete.has(key)) break;
          if (!s.fetched.has(key)) this.fetch(s, key);
        }
      }
    }
  }

  /** Starts reading `key` for the fold; a failure is met when the file's turn comes. */
  private fetch(s: EarlyStudy, key: string): Promise<Uint8Array> {
    const bytes = s.store.get(key);
    bytes.catch(() => {});
    s.fetched.set(key, bytes);
    return bytes;
  }

  /** Folds every config's next files while they are complete. */
  private async advance(s: EarlyStudy): Promise<void> {
    const fold = s.fold;
    if (!fold || s.failed) return;
    try {
      for (const ci of fold.configs.keys()) {
        for (const kind of FOLD_KINDS) {
          for (let key = fold.nextKey(ci, kind); key !== undefined && s.complete.has(key); key = fold.nextKey(ci, kind)) {
            this.request(s);
            // once the study is taken, only the files already requested are folded: `take` waits for them, and the
            // job would otherwise read them again (steps files are not kept in memory)
            const bytes = s.fetched.get(key) ?? (s.taken ? undefined : this.fetch(s, key));
            if (!bytes) break;
            const data = await bytes;
            const start = spanStart();
            fold.add(ci, kind, data);
            this.opts.trace?.end(start, key, 'fold', { bytes: data.byteLength });
            s.fetched.delete(key);
          }
        }
      }
    } catch {
      s.failed = true;
    }
  }
}

/**
 * Aggregates the finished study `studyId` written under `out` (aggregateStudy), continuing the fold `early` made of it
 * while it ran, if any, through the store that fold read (which keeps the samples the report reads again); otherwise
 * from the start through aggregationStore(store). Returns that store with the paths: study.json and the report go
 * through it. The embedded run with shard processes and the aggregator service finish a study this way.
 */
export async function aggregateFinishedStudy(
  store: ObjectStore,
  studyId: string,
  out: string,
  early: EarlyFolds | null,
): Promise<{ store: ObjectStore; summary: string; curves: string; foldedBefore: number }> {
  const taken = early ? await early.take(studyId, out) : null;
  const finished = taken?.store ?? aggregationStore(store);
  return { store: finished, ...(await aggregateStudy(finished, studyId, taken?.fold)) };
}
