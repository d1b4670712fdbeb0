import type { Worker } from 'bullmq';

/**
 * SIGTERM / SIGINT: stop taking jobs, let the current one finish (BullMQ's close waits for it), then exit 0.
 * A second signal while draining is ignored; the orchestrator's grace period bounds the wait.
 */
export function drainOnSignal(worker: Worker, log: (line: string) => void): void {
  let closing = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (closing) return;
      closing = true;
      log(`${signal}: finishing the current job, then exiting`);
      void worker.close().then(() => process.exit(0));
    });
  }
}

/**
 * For BullMQ sandboxed processors: exit when the worker that forked this process is gone. BullMQ's child reports an
 * uncaught error by sending it to its parent; with the parent gone that send fails and re-triggers the handler in a
 * busy loop. These handlers run first and exit instead; the job is taken over once its lock expires.
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
