import type { ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import type { PlannedConfig, ShardPlan } from '@trajlab/study';
import { startShardProcess, type ChildMessage, type ParentMessage, type StartedShardProcess } from './shard-process.js';
import type { TraceRecorder } from './trace.js';

export type { ChildMessage, ParentMessage, StartedShardProcess } from './shard-process.js';
export { startShardProcess } from './shard-process.js';

/** A shard that failed in a child process; its message keeps the original error (name included). */
export class ShardProcessError extends Error {
  constructor(
    readonly originalName: string,
    message: string,
  ) {
    super(message);
    this.name = 'ShardProcessError';
  }
}

/** A batch a shard process gave back before it began (ForkedExecutor.giveBack): runShards hands it out again. */
export class BatchGivenBack extends Error {
  override name = 'BatchGivenBack';
}

/** One shard of work. */
export interface ShardWork {
  config: PlannedConfig;
  shard: ShardPlan;
}

/** Something that runs batches of shards one at a time: this process, or a forked shard process. */
export interface ShardExecutor {
  /**
   * Runs a batch: one or more shards of one config, in sample order (executeShards); resolves with whether each was
   * reused from an earlier run.
   */
  run(batch: ShardWork[], onProgress: (fraction: number) => void): Promise<boolean[]>;
  /**
   * From its next step on, lets this executor's native matrix products use `share` times the threads they have
   * (shareNativeThreads in @trajlab/backend; 1 gives them back): runShards hands the cores of executors that have
   * nothing left to do to those still computing. An executor without it keeps its threads.
   */
  shareCores?(share: number): void;
}

/** A forked shard process as an executor. */
export interface ForkedExecutor extends ShardExecutor {
  /** Resolves once the process is ready (it has built its device state); rejects with its start-up failure. */
  ready: Promise<void>;
  /**
   * Asks for `batch` (handed to run, not finished) back: if the process has not begun it, its run rejects with
   * BatchGivenBack and nothing of it was computed; otherwise the process finishes it as usual.
   */
  giveBack(batch: ShardWork[]): void;
}

/**
 * A started shard process as an executor. It takes batches at once: one handed out before the process is ready waits
 * in its channel and starts as soon as it is (the process handles its messages in order); a start-up failure fails it.
 * The spans it sends (when it records a timeline) go to `trace`.
 */
function executorOf(started: StartedShardProcess, trace: TraceRecorder | undefined): ForkedExecutor {
  const { child } = started;
  const ready = started.first.then((m) => {
    if (m.type === 'ready') trace?.add(m.trace);
    if (m.type !== 'ready') throw new ShardProcessError(m.type === 'error' ? m.name : 'Error', m.type === 'error' ? m.message : 'unexpected message');
  });
  // a process that fails to start is reported by runShards; never as an unhandled rejection
  ready.catch(() => {});
  return {
    ready,
    run: (batch, onProgress) =>
      new Promise<boolean[]>((done, fail) => {
        const w = batch[0]!;
        const onMessage = (msg: ChildMessage) => {
          // the process may hold the next batch already: only this batch's messages (named by its first shard) are
          // this call's; a failure at start-up names no shard and fails the batch that waited for it
          if (msg.type !== 'ready' && msg.configId !== undefined && (msg.configId !== w.config.configId || msg.shard !== w.shard.name)) return;
          if (msg.type === 'progress') onProgress(msg.fraction);
          else if (msg.type === 'done') {
            trace?.add(msg.trace);
            finish(() => done(msg.reused));
          }
          else if (msg.type === 'returned') finish(() => fail(new BatchGivenBack(`${w.config.configId} ${w.shard.name}: given back before it began`)));
          else if (msg.type === 'error') finish(() => fail(new ShardProcessError(msg.name, msg.message)));
        };
        const onExit = (code: number | null) => finish(() => fail(new Error(`shard process exited (${code}) during ${w.config.configId} ${batch.map((b) => b.shard.name).join(', ')}`)));
        const finish = (f: () => void) => {
          child.off('message', onMessage);
          child.off('exit', onExit);
          f();
        };
        child.on('message', onMessage);
        child.on('exit', onExit);
        const sigmas = w.config.gits ? w.config.sigmas : undefined;
        child.send({ type: 'shards', configId: w.config.configId, shards: batch.map((b) => b.shard.name), ...(sigmas ? { sigmas } : {}) } satisfies ParentMessage);
      }),
    shareCores: (share) => {
      if (child.connected) child.send({ type: 'share', share } satisfies ParentMessage);
    },
    giveBack: (batch) => {
      if (child.connected) child.send({ type: 'return', configId: batch[0]!.config.configId, shard: batch[0]!.shard.name } satisfies ParentMessage);
    },
  };
}

/**
 * Forked shard processes, started as early as possible: each resolves the study and builds its own device state
 * while this process does the same, so their start-up overlaps with this process's own start-up and work.
 */
export class ShardProcesses {
  private readonly children: ChildProcess[];
  readonly executors: ForkedExecutor[];

  /**
   * `count` processes for the study at `specPath` writing under `out`: those of `started` first (started by
   * startShardProcess for the same study and output, before this process had loaded its modules), then new ones.
   * With `trace` (enabled), the new ones record their timelines too (those of `started` do if they were started so),
   * and every span they send is added to it.
   */
  constructor(count: number, specPath: string, out: string, started: StartedShardProcess[] = [], trace?: TraceRecorder) {
    const n = Math.max(0, count);
    const processes = started.slice(0, n);
    for (const p of started) {
      p.adopted = true;
      if (!processes.includes(p)) p.child.kill();
    }
    while (processes.length < n) processes.push(startShardProcess(specPath, out, trace?.enabled ?? false));
    this.children = processes.map((p) => p.child);
    this.executors = processes.map((p) => executorOf(p, trace));
  }

  /**
   * Keeps the first `count` processes and stops the others at once (those a study has no job for, or all of them when
   * its spec is refused): they have written nothing, since only a shard makes a process write.
   */
  keep(count: number): void {
    for (const c of this.children.splice(Math.max(0, count))) c.kill();
    this.executors.splice(Math.max(0, count));
  }

  /** Tells every process to exit (one still starting gets the message once ready, or dies with its IPC channel). */
  close(): void {
    for (const c of this.children) if (c.connected) c.send({ type: 'exit' } satisfies ParentMessage);
  }
}

/**
 * Runs shards on this process (`local`, which starts at once: it already holds the study) and the forked `processes`,
 * which join as soon as they are ready. Reference shards first, since the others read their final samples. A phase
 * ends when its queue is empty and no executor is busy. The outputs are the same bytes whoever runs a shard: every
 * executor runs the same shard code.
 *
 * Executors take batches of up to `batchSize` consecutive shards of one config (shardsPerBatch). With several
 * executors a batch is at most the shards waiting / executors, rounded up (guided self-scheduling): batches shrink as
 * the queue empties, down to single shards at the end, so no executor is left with a long batch while the others are
 * done; and the executors still computing then get the idle cores (below). Fewer, larger batches stream the training
 * set fewer times: halving the divisor from 2 x executors took ~40 ms off a 2.4 s `--workers 2` study. The shards an
 * executor already holds count as its own: a process handed its next batch while it runs one gets at most its share of
 * those and the waiting ones together (batchLimit's `held`), so it is never left with two batches to finish while the
 * others have nothing.
 *
 * This process only reads its messages between its own steps (tens of milliseconds with large batches), so a forked
 * process is never left to ask for work:
 * - one still starting is handed a batch at once when the phase holds at least PREDISPATCH_WAITING shards per
 *   executor; it begins it the moment it is ready. Should this process run out of work first, it asks for that batch
 *   back (giveBack) and computes it itself, unless the other has begun it.
 * - one that is ready is given its next batch while it still runs one, as long as more shards wait than there are
 *   executors; near the end each holds one at a time, so none is left with two to finish.
 *
 * Once a phase's queue is empty, an executor that finishes has nothing left to do: the executors still computing get
 * its core for their native matrix products (shareCores: with 2 executors, the last one computes on 2 threads), and
 * every executor gets its own threads back when the phase ends. Bits never depend on the thread count.
 *
 * `onProgress` hears of a batch's first shard; `onDone` of each shard of a batch once the batch is done.
 *
 * @param batchSize - the most shards a batch takes. @defaultValue 1 (shard by shard)
 * @param cores - the machine's cores: no executor is lent more than its part of them (more processes than cores lend
 *   nothing). @defaultValue os.availableParallelism()
 */
export async function runShards(
  local: ShardExecutor,
  processes: { executors: readonly ForkedExecutor[] },
  work: ShardWork[],
  onProgress: (config: PlannedConfig, shard: ShardPlan, fraction: number) => void,
  onDone: (config: PlannedConfig, shard: ShardPlan, reused: boolean) => void,
  batchSize = 1,
  cores = availableParallelism(),
): Promise<void> {
  const phases = [work.filter((w) => w.config.role === 'reference'), work.filter((w) => w.config.role !== 'reference')].filter((p) => p.length);
  const executorCount = 1 + processes.executors.length;
  // the forked processes known to be ready, for every phase: with this process, those that compute its work
  const ready = new Set<ShardExecutor>();
  for (const f of processes.executors) f.ready.then(() => ready.add(f), () => {});

  /** Runs one phase's queue on every executor; every executor has its own threads again afterwards. */
  async function runPhase(queue: ShardWork[]): Promise<void> {
    // the share of cores each executor was last given (1: its own)
    const shares = new Map<ShardExecutor, number>();
    const share = (exec: ShardExecutor, n: number) => {
      if ((shares.get(exec) ?? 1) === n) return;
      shares.set(exec, n);
      exec.shareCores?.(n);
    };
    try {
      await computePhase(queue, share);
    } finally {
      for (const exec of shares.keys()) share(exec, 1);
    }
  }

  /** Hands out a phase's queue until it is empty and every executor is done, or one failed. */
  function computePhase(queue: ShardWork[], share: (exec: ShardExecutor, n: number) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let error: unknown = null;
      // batches handed to each executor and not finished yet
      const held = new Map<ShardExecutor, number>();
      const holding = (exec: ShardExecutor) => held.get(exec) ?? 0;
      // and the shards in them
      const heldShards = new Map<ShardExecutor, number>();
      const holdingShards = (exec: ShardExecutor) => heldShards.get(exec) ?? 0;
      const busy = () => [...held.values()].some((n) => n > 0);
      // batches handed to processes still starting, which this process may ask back
      const beforeReady = new Map<ForkedExecutor, ShardWork[]>();
      // on a failure, wait for this process's own batch to stop before rejecting (its caller then disposes the
      // device state); forked processes are told to exit afterwards
      const settle = () => {
        if (error !== null && holding(local) === 0) reject(error);
      };
      // with nothing left to hand out, the cores of the executors that are ready (this process, the forked ones once
      // ready) and hold nothing go to those that still compute (an executor still starting uses its own core)
      const shareIdleCores = () => {
        const joined = [local, ...ready];
        const computing = joined.filter((e) => holding(e) > 0);
        if (queue.length > 0 || computing.length === 0) return;
        for (const e of computing) share(e, Math.max(1, Math.floor(Math.min(joined.length, cores) / computing.length)));
      };
      const pump = (exec: ShardExecutor) => {
        if (error !== null) return settle();
        const depth = exec !== local && queue.length > executorCount ? 2 : 1;
        while (holding(exec) < depth && queue.length > 0) {
          // a process still running a batch gets a next one only up to its share of what is left (batchLimit)
          const limit = batchLimit(queue.length, executorCount, batchSize, holdingShards(exec));
          if (limit < 1) break;
          start(exec, takeBatch(queue, limit));
        }
        if (exec === local && holding(local) === 0) {
          // out of work: the batches of processes still starting come back here, unless begun meanwhile
          for (const [f, batch] of beforeReady) f.giveBack(batch);
          beforeReady.clear();
        }
        if (!busy()) resolve();
        else shareIdleCores();
      };
      // a batch handed to `exec` (sign 1) or finished, failed or given back (-1)
      const hold = (exec: ShardExecutor, batch: ShardWork[], sign: 1 | -1) => {
        held.set(exec, holding(exec) + sign);
        heldShards.set(exec, holdingShards(exec) + sign * batch.length);
      };
      const start = (exec: ShardExecutor, batch: ShardWork[]) => {
        hold(exec, batch, 1);
        const first = batch[0]!;
        exec.run(batch, (f) => onProgress(first.config, first.shard, f)).then(
          (reused) => {
            hold(exec, batch, -1);
            batch.forEach((w, i) => onDone(w.config, w.shard, reused[i]!));
            pump(exec);
          },
          (err: unknown) => {
            hold(exec, batch, -1);
            if (err instanceof BatchGivenBack && error === null) {
              queue.unshift(...batch);
              return pump(local);
            }
            error ??= err;
            settle();
          },
        );
      };
      pump(local);
      for (const f of processes.executors) {
        if (!ready.has(f) && queue.length >= PREDISPATCH_WAITING * executorCount) {
          const batch = takeBatch(queue, batchLimit(queue.length, executorCount, batchSize));
          beforeReady.set(f, batch);
          start(f, batch);
        }
        f.ready.then(
          () => {
            // `ready` has it already (its callback was registered first)
            beforeReady.delete(f);
            pump(f);
          },
          (err: unknown) => {
            error ??= err;
            settle();
          },
        );
      }
    });
  }

  for (const phase of phases) await runPhase([...phase]);
}

/**
 * Shards per executor a phase must still hold, after this process took its first batch, for a process still starting
 * to be handed one at once (runShards): enough that this process has other work until the other is ready.
 */
export const PREDISPATCH_WAITING = 4;

/**
 * The most shards the next batch may take when `waiting` shards wait for `executors` executors (see runShards):
 * ceil(waiting / executors), at most batchSize, and at least 1 for an executor that holds nothing. An executor that
 * still holds `held` shards (a batch it runs, one queued) may take ceil((waiting + held) / executors) - held more:
 * 0 once it holds its share.
 *
 * @param held - shards handed to this executor and not finished. @defaultValue 0
 */
export function batchLimit(waiting: number, executors: number, batchSize: number, held = 0): number {
  if (executors <= 1) return batchSize;
  // guided self-scheduling over the shards not yet computed that this executor would answer for: the waiting ones and
  // those it holds already; 0 when it holds its share
  const share = Math.ceil((waiting + held) / executors) - held;
  return held > 0 ? Math.max(0, Math.min(batchSize, share)) : Math.max(1, Math.min(batchSize, share));
}

/** Takes from the head of `queue` its first shard and up to `limit` - 1 more of the same config that follow it. */
function takeBatch(queue: ShardWork[], limit: number): ShardWork[] {
  let n = 1;
  while (n < limit && n < queue.length && queue[n]!.config === queue[0]!.config) n++;
  return queue.splice(0, n);
}
