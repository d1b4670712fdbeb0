import type { Worker } from 'bullmq';

/**
 * SIGTERM / SIGINT: stop taking jobs, let the ones held finish (BullMQ's close waits for them), run `closed` (e.g. stop
 * the worker's own processes; awaited when it returns a promise), then exit 0. A second signal while draining is
 * ignored; the orchestrator's grace period bounds the wait.
 */
export function drainOnSignal(worker: Worker, log: (line: string) => void, closed: () => void | Promise<void> = () => {}): void {
  let closing = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (closing) return;
      closing = true;
      log(`${signal}: finishing the current job(s), then exiting`);
      void worker
        .close()
        .then(closed)
        .finally(() => process.exit(0));
    });
  }
}

/**
 * For forked processes (BullMQ sandboxed processors, the worker's shard processes): exit when the process that forked
 * this one is gone. A child that reports an uncaught error by sending it to its parent would, with the parent gone,
 * fail that send and re-trigger the handler in a busy loop. These handlers run first and exit instead; the jobs are
 * taken over once their locks expire.
 */
export function exitWithParent(): void {
  if (!process.send) return;
  const exitIfOrphaned = () => {
    if (!process.connected) process.exit(1);
  };
  process.on('disconnect', () => process.exit(1));
  process.prependListener('unhandledRejection', exitIfOrphaned);
  process.prependListener('uncaughtException', exitIfOrphaned);
}

/** The part of BullMQ's (internal) sandbox child pool that warmSandbox uses. */
interface SandboxPool {
  retain(processFile: string): Promise<unknown>;
  release(child: unknown): void;
}

/**
 * Starts a sandboxed worker's `count` child processes now instead of at its first job: each loads the processor
 * module (Node, tfjs, Arrow, and the TypeScript loader where the sources run: up to a second) while the queue is still
 * empty, so the first shard of a study does not wait for it. Uses BullMQ's child pool (an internal of the pinned version); where that is
 * missing the children simply start with the first job, as before. Resolves with the number started.
 */
export async function warmSandbox(worker: Worker, processFile: string, count: number): Promise<number> {
  const pool = (worker as unknown as { childPool?: SandboxPool }).childPool;
  if (!pool || typeof pool.retain !== 'function' || typeof pool.release !== 'function') return 0;
  const children = await Promise.all(Array.from({ length: count }, () => pool.retain(processFile)));
  for (const child of children) pool.release(child);
  return children.length;
}
