/**
 * Starting a shard process of `trajlab run --workers N`, and the messages it exchanges with its parent. Only Node's
 * own modules are imported here, so the `trajlab` command can start its shard processes before it loads anything
 * else (see services/coordinator/src/early-start.ts); the protocol itself is in pool.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TraceEvent } from './trace.js';

export type ParentMessage =
  /** `trace`: record a timeline (trace.ts) and send its spans with `ready` and each `done`. */
  | { type: 'init'; specPath: string; out: string; trace?: boolean }
  /**
   * Shards of one config to compute as one batch (runShardBatch), named in sample order; `sigmas`: the config's noise
   * levels when the parent computed them (GITS), else absent.
   */
  | { type: 'shards'; configId: string; shards: string[]; sigmas?: number[] }
  /** From the next step on, `share` times the native products' threads (shareNativeThreads); obeyed at once. */
  | { type: 'share'; share: number }
  /** Give back the batch named by its config and first shard if it has not begun (answered by `returned`), else finish it. */
  | { type: 'return'; configId: string; shard: string }
  | { type: 'exit' };
/** Messages about a batch name its config and its first shard (`shard`). */
export type ChildMessage =
  /** `trace`: the start-up's spans, when the parent asked for a timeline. */
  | { type: 'ready'; trace?: TraceEvent[] }
  | { type: 'progress'; configId: string; shard: string; fraction: number }
  /** `reused`: for each shard of the batch, whether its files were already complete; `trace`: the batch's span. */
  | { type: 'done'; configId: string; shard: string; reused: boolean[]; trace?: TraceEvent[] }
  /** The batch was given back (`return`) before it began: nothing of it was computed or written. */
  | { type: 'returned'; configId: string; shard: string }
  /** A failure; `configId` and `shard` name the batch it happened in (absent at start-up). */
  | { type: 'error'; message: string; name: string; configId?: string; shard?: string };

/** A shard process just started: its first message (`ready` or `error`) is caught whenever the caller looks. */
export interface StartedShardProcess {
  child: ChildProcess;
  /** Its first message other than `returned`; rejects if it exits before sending one. */
  first: Promise<ChildMessage>;
  /** Set by whoever takes charge of it (pool.ts ShardProcesses); one nobody took is stopped by its starter. */
  adopted: boolean;
}

/**
 * Forks a shard process and tells it at once which study it serves: it loads its modules, resolves the spec at
 * `specPath` and builds its device state, then sends `ready` (or `error`); it writes nothing under `out` until it is
 * given a shard. The message waits in the IPC channel until the process listens. With `trace`, it records its
 * timeline (trace.ts) and sends it along with its messages.
 */
export function startShardProcess(specPath: string, out: string, trace = false): StartedShardProcess {
  // compiled (dist/*.js, see scripts/build-js.mjs): the child is compiled too, bundled if it was, and needs no
  // TypeScript loader
  const compiled = import.meta.url.endsWith('.js');
  const bundled = fileURLToPath(new URL('./child.bundle.cjs', import.meta.url));
  const entry = compiled && existsSync(bundled) ? bundled : fileURLToPath(new URL(compiled ? './child.js' : './child.ts', import.meta.url));
  const execArgv = compiled ? [] : ['--import', import.meta.resolve('tsx')];
  const child = fork(entry, [], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // listening from the start: a message nobody listens for is lost; a batch given back during start-up (`returned`)
  // is answered before the process is ready
  const first = new Promise<ChildMessage>((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`shard process exited (${code}) before it was ready`));
    const onMessage = (m: ChildMessage) => {
      if (m.type === 'returned') return;
      child.off('exit', onExit);
      child.off('message', onMessage);
      resolve(m);
    };
    child.once('exit', onExit);
    child.on('message', onMessage);
  });
  first.catch(() => {}); // reported by whoever waits for it, never as an unhandled rejection
  child.send({ type: 'init', specPath, out, ...(trace ? { trace } : {}) } satisfies ParentMessage);
  return { child, first, adopted: false };
}
