import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { PlannedConfig, ShardPlan } from '@trajlab/study';

export type ParentMessage =
  | { type: 'init'; specPath: string; out: string; sigmas: Record<string, number[]> }
  | { type: 'shard'; configId: string; shard: string }
  | { type: 'exit' };
export type ChildMessage =
  | { type: 'ready' }
  | { type: 'progress'; configId: string; shard: string; fraction: number }
  | { type: 'done'; configId: string; shard: string; reused: boolean }
  | { type: 'error'; message: string; name: string };

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

/** One shard of work. */
export interface ShardWork {
  config: PlannedConfig;
  shard: ShardPlan;
}

/** Something that runs shards one at a time: this process, or a forked shard process. */
export interface ShardExecutor {
  /** Runs one shard; resolves with whether it was reused from an earlier run. */
  run(work: ShardWork, onProgress: (fraction: number) => void): Promise<boolean>;
}

/** A forked shard process as an executor (ready once it has resolved the study and built its device state). */
function forkExecutor(specPath: string, out: string, sigmas: Record<string, number[]>, children: ChildProcess[]): Promise<ShardExecutor> {
  const tsx = import.meta.resolve('tsx');
  const entry = fileURLToPath(new URL('./child.ts', import.meta.url));
  const child = fork(entry, [], { execArgv: ['--import', tsx], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  return new Promise<ShardExecutor>((resolve, reject) => {
    const early = (code: number | null) => reject(new Error(`shard process exited (${code}) before it was ready`));
    child.once('exit', early);
    child.once('message', (m: ChildMessage) => {
      if (m.type !== 'ready') return reject(new ShardProcessError(m.type === 'error' ? m.name : 'Error', m.type === 'error' ? m.message : 'unexpected message'));
      child.off('exit', early);
      resolve({
        run: (w, onProgress) =>
          new Promise<boolean>((done, fail) => {
            const onMessage = (msg: ChildMessage) => {
              if (msg.type === 'progress') onProgress(msg.fraction);
              else if (msg.type === 'done') finish(() => done(msg.reused));
              else if (msg.type === 'error') finish(() => fail(new ShardProcessError(msg.name, msg.message)));
            };
            const onExit = (code: number | null) => finish(() => fail(new Error(`shard process exited (${code}) during ${w.config.configId} ${w.shard.name}`)));
            const finish = (f: () => void) => {
              child.off('message', onMessage);
              child.off('exit', onExit);
              f();
            };
            child.on('message', onMessage);
            child.on('exit', onExit);
            child.send({ type: 'shard', configId: w.config.configId, shard: w.shard.name } satisfies ParentMessage);
          }),
      });
    });
    child.send({ type: 'init', specPath, out, sigmas } satisfies ParentMessage);
  });
}

/**
 * Runs shards on `n` executors: this process (`local`, which starts at once: it already holds the study) and n - 1
 * forked processes (each one core on the wasm backend), which join as soon as they are ready, so their start-up
 * overlaps with work. Reference shards first, since the others read their final samples. A phase ends when its queue is
 * empty and no executor is busy, without waiting for processes still starting. The outputs are the same bytes whoever
 * runs a shard: every executor runs the same shard code.
 */
export async function runShards(
  n: number,
  local: ShardExecutor,
  specPath: string,
  out: string,
  sigmas: Record<string, number[]>,
  work: ShardWork[],
  onProgress: (config: PlannedConfig, shard: ShardPlan, fraction: number) => void,
  onDone: (config: PlannedConfig, shard: ShardPlan, reused: boolean) => void,
): Promise<void> {
  const phases = [work.filter((w) => w.config.role === 'reference'), work.filter((w) => w.config.role !== 'reference')].filter((p) => p.length);
  const children: ChildProcess[] = [];
  const forked = Array.from({ length: Math.max(0, Math.min(n, work.length) - 1) }, () => forkExecutor(specPath, out, sigmas, children));
  try {
    for (const phase of phases) {
      const queue = [...phase];
      await new Promise<void>((resolve, reject) => {
        let busy = 0;
        let localBusy = false;
        let error: unknown = null;
        // on a failure, wait for this process's own shard to stop before rejecting (its caller then disposes the
        // device state); forked processes are told to exit afterwards
        const settle = () => {
          if (error !== null && !localBusy) reject(error);
        };
        const pump = (exec: ShardExecutor) => {
          if (error !== null) return settle();
          const w = queue.shift();
          if (!w) {
            if (busy === 0) resolve();
            return;
          }
          busy++;
          if (exec === local) localBusy = true;
          exec.run(w, (f) => onProgress(w.config, w.shard, f)).then(
            (reused) => {
              busy--;
              if (exec === local) localBusy = false;
              onDone(w.config, w.shard, reused);
              pump(exec);
            },
            (err: unknown) => {
              busy--;
              if (exec === local) localBusy = false;
              error ??= err;
              settle();
            },
          );
        };
        pump(local);
        for (const f of forked) {
          f.then(pump, (err: unknown) => {
            error ??= err;
            settle();
          });
        }
      });
    }
  } finally {
    for (const c of children) if (c.connected) c.send({ type: 'exit' } satisfies ParentMessage);
    // a process still starting gets the exit message once it is ready, or dies with its IPC channel
    for (const f of forked) f.catch(() => {});
  }
}
