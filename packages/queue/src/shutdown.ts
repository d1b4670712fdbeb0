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
