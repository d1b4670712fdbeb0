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

/**
 * Runs shards in `n` forked processes (each one core on the wasm backend): reference shards first, since the others
 * read their final samples. The outputs are the same bytes as in one process: every process runs the same shard code.
 */
export async function runShardsInProcesses(
  n: number,
  specPath: string,
  out: string,
  sigmas: Record<string, number[]>,
  work: { config: PlannedConfig; shard: ShardPlan }[],
  onProgress: (config: PlannedConfig, shard: ShardPlan, fraction: number) => void,
  onDone: (config: PlannedConfig, shard: ShardPlan, reused: boolean) => void,
): Promise<void> {
  const tsx = import.meta.resolve('tsx');
  const entry = fileURLToPath(new URL('./child.ts', import.meta.url));
  const phases = [work.filter((w) => w.config.role === 'reference'), work.filter((w) => w.config.role !== 'reference')].filter((p) => p.length);
  const children: ChildProcess[] = [];
  const kill = () => children.forEach((c) => c.connected && c.send({ type: 'exit' } satisfies ParentMessage));
  try {
    const started = await Promise.all(
      Array.from({ length: Math.max(1, Math.min(n, work.length)) }, () => {
        const child = fork(entry, [], { execArgv: ['--import', tsx], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        children.push(child);
        return new Promise<ChildProcess>((resolve, reject) => {
          child.once('message', (m: ChildMessage) => (m.type === 'ready' ? resolve(child) : reject(new ShardProcessError(m.type === 'error' ? m.name : 'Error', m.type === 'error' ? m.message : 'unexpected message'))));
          child.once('exit', (code) => reject(new Error(`shard process exited (${code}) before it was ready`)));
          child.send({ type: 'init', specPath, out, sigmas } satisfies ParentMessage);
        });
      }),
    );
    for (const phase of phases) {
      const queue = [...phase];
      await Promise.all(
        started.map(
          (child) =>
            new Promise<void>((resolve, reject) => {
              let current: { config: PlannedConfig; shard: ShardPlan } | undefined;
              const next = () => {
                current = queue.shift();
                if (!current) {
                  child.off('message', onMessage);
                  child.off('exit', onExit);
                  return resolve();
                }
                child.send({ type: 'shard', configId: current.config.configId, shard: current.shard.name } satisfies ParentMessage);
              };
              const onMessage = (m: ChildMessage) => {
                if (m.type === 'progress' && current) onProgress(current.config, current.shard, m.fraction);
                else if (m.type === 'done' && current) {
                  onDone(current.config, current.shard, m.reused);
                  next();
                } else if (m.type === 'error') reject(new ShardProcessError(m.name, m.message));
              };
              const onExit = (code: number | null) => reject(new Error(`shard process exited (${code}) during ${current?.config.configId} ${current?.shard.name}`));
              child.on('message', onMessage);
              child.on('exit', onExit);
              next();
            }),
        ),
      );
    }
  } finally {
    kill();
  }
}
