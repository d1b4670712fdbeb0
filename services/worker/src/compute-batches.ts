import { executeShards, spanStart, type ShardExecution, type ShardWrites, type SpanStart, type StudyContext } from '@trajlab/runner';
import type { ObjectStore } from '@trajlab/storage';
import type { PlannedConfig, ShardPlan } from '@trajlab/study';
import type { OneAtATime } from './one-at-a-time.js';

/** A shard job of a shard process on its way to the compute. */
export interface ShardForCompute {
  /** The job's id (named in the batch log). */
  id: string;
  /** Jobs with the same key (study, output and config) may be computed together. */
  key: string;
  ctx: StudyContext;
  store: ObjectStore;
  config: PlannedConfig;
  shard: ShardPlan;
  /** The most shards the batch this job starts may hold (1: alone). */
  limit: number;
  /** Called at every time point of the batch the job is computed in (points done and in all); a throw stops the batch. */
  onPoint(done: number, total: number): void;
  /** Its study records a timeline (`submit --watch --trace`): onComputed hears of its batch. @defaultValue false */
  traced?: boolean;
}

interface Waiting {
  job: ShardForCompute;
  resolve(execution: ShardExecution): void;
  reject(err: unknown): void;
}

/**
 * A shard process's shard jobs on their way to its one computation at a time (OneAtATime). When the compute comes to a
 * job, it takes along the jobs waiting behind it with the same key, up to its limit, and they are computed as one batch
 * of the denoiser (executeShards: each shard's files are the same bytes as alone, see shardsPerBatch). The compute is
 * free again as soon as the batch is computed: its files upload while the next job or batch computes. A failure fails
 * every job of the batch.
 */
export class ComputeBatches {
  private readonly waiting: Waiting[] = [];

  /**
   * `onBatch` hears of each batch of more than one job, by job id, in sample order; `onComputed` of each batch with a
   * traced job once it is computed (its jobs in sample order, and when its compute began and ended).
   */
  constructor(
    private readonly compute: OneAtATime,
    private readonly writes: ShardWrites,
    private readonly onBatch: (ids: string[]) => void = () => {},
    private readonly onComputed: (jobs: ShardForCompute[], start: SpanStart, end: SpanStart) => void = () => {},
  ) {}

  /** Resolves with the job's execution once its shard is computed and written (the store is not checked again). */
  run(job: ShardForCompute): Promise<ShardExecution> {
    return new Promise<ShardExecution>((resolve, reject) => {
      const entry: Waiting = { job, resolve, reject };
      this.waiting.push(entry);
      void this.compute.run(() => this.computeFrom(entry));
    });
  }

  /** The compute's turn of `head`: nothing if an earlier batch took it, else its batch, until computed. */
  private async computeFrom(head: Waiting): Promise<void> {
    const at = this.waiting.indexOf(head);
    if (at < 0) return;
    const batch = this.waiting.splice(at, 1);
    for (let i = 0; i < this.waiting.length && batch.length < head.job.limit; ) {
      if (this.waiting[i]!.job.key === head.job.key) batch.push(...this.waiting.splice(i, 1));
      else i++;
    }
    batch.sort((a, b) => a.job.shard.first - b.job.shard.first);
    if (batch.length > 1) {
      try {
        this.onBatch(batch.map((w) => w.job.id));
      } catch {
        // only a log line: the batch computes all the same
      }
    }
    const { ctx, store, config } = head.job;
    let computed: () => void = () => {};
    const done = new Promise<void>((resolve) => (computed = resolve));
    const execution = executeShards(
      ctx,
      store,
      config,
      batch.map((w) => w.job.shard),
      {
        checked: true,
        writes: this.writes,
        onPoint: (points, total) => {
          for (const w of batch) w.job.onPoint(points, total);
        },
        // the compute is this call's turn; it ends when the batch is computed, before its files upload
        exclusive: async (task) => {
          const start = spanStart();
          try {
            return await task();
          } finally {
            computed();
            if (batch.some((w) => w.job.traced)) {
              try {
                this.onComputed(batch.map((w) => w.job), start, spanStart());
              } catch {
                // only a timeline: the batch is computed all the same
              }
            }
          }
        },
      },
    );
    execution.then(
      (executions) => batch.forEach((w, i) => w.resolve(executions[i]!)),
      (err: unknown) => batch.forEach((w) => w.reject(err)),
    );
    await Promise.race([done, execution.then(() => {}, () => {})]);
  }
}
