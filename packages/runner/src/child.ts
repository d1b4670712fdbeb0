/**
 * A shard process of `trajlab run --workers N`: resolves the study itself, builds its device state once, then runs the
 * batches of shards its parent sends over IPC with the same executeShards as everything else.
 */
import { backendFromEnv, initBackend, shareNativeThreads } from '@trajlab/backend';
import { sharedStore } from '@trajlab/storage';
import { planStudy, prefetchSpecFile, resolveStudyFile } from '@trajlab/study';
import { createContext, type StudyContext } from './context.js';
import { executeShards } from './execute.js';
import type { ChildMessage, ParentMessage } from './pool.js';
import { processStart, spanStart, TraceRecorder } from './trace.js';

// every module is loaded by now: the end of the timeline's first span (`--trace`)
const loaded = spanStart();
/** This process's timeline, recorded when the parent asks for one (`init` with `trace`). */
let trace = new TraceRecorder(false);

let ctx: StudyContext | null = null;
let out = '';
const send = (m: ChildMessage) => process.send?.(m);

process.on('disconnect', () => process.exit(1));

/** The key of a batch: its config and its first shard, as messages name it. */
const batchKey = (configId: string, shard: string) => `${configId}\n${shard}`;
/** Batches received and not begun yet: a `return` takes one back. */
const waiting = new Set<string>();
/** Why this process could not start (`init` failed): every batch handed to it fails with it. */
let startFailure: unknown = null;

/** Runs one message's work; its failure is reported to the parent (naming the shard, if it was one). */
async function handle(raw: Exclude<ParentMessage, { type: 'exit' } | { type: 'share' } | { type: 'return' }>): Promise<void> {
  if (raw.type === 'shards' && !waiting.delete(batchKey(raw.configId, raw.shards[0]!))) return; // given back
  try {
    if (raw.type === 'init') {
      if (raw.trace) trace = new TraceRecorder(true);
      trace.end(processStart(), 'modules', 'start-up', {}, loaded);
      try {
        await trace.span('backend', 'start-up', () => initBackend(backendFromEnv()));
        const { study, data, plan } = await trace.span('resolve', 'start-up', async () => {
          await prefetchSpecFile(raw.specPath);
          const resolved = resolveStudyFile(raw.specPath);
          return { ...resolved, plan: planStudy(resolved.study) };
        });
        ctx = await trace.span('context', 'start-up', () => createContext(study, data, plan));
      } catch (err) {
        startFailure = err;
        throw err;
      }
      out = raw.out;
      send({ type: 'ready', ...(trace.enabled ? { trace: trace.take() } : {}) });
    } else {
      if (!ctx) throw startFailure ?? new Error('the shard process has no study');
      const context = ctx;
      const config = context.plan.configs.find((c) => c.configId === raw.configId)!;
      const shards = raw.shards.map((name) => config.shards.find((s) => s.name === name)!);
      if (raw.sigmas) config.sigmas = raw.sigmas; // GITS: computed once by the parent
      const first = raw.shards[0]!;
      let last = 0;
      const res = await trace.batch(raw.configId, shards, () => executeShards(context, sharedStore(out), config, shards, {
        onPoint: (done, total) => {
          const now = Date.now();
          if (now - last > 100 || done === total) {
            last = now;
            send({ type: 'progress', configId: raw.configId, shard: first, fraction: done / total });
          }
        },
      }));
      send({ type: 'done', configId: raw.configId, shard: first, reused: res.map((r) => r.reused), ...(trace.enabled ? { trace: trace.take() } : {}) });
    }
  } catch (err) {
    const which = raw.type === 'shards' ? { configId: raw.configId, shard: raw.shards[0] } : {};
    send({ type: 'error', message: err instanceof Error ? err.message : String(err), name: err instanceof Error ? err.name : 'Error', ...which });
  }
}

// Messages are handled one after the other (the parent may send a batch before this process is ready, or the next one
// before this one is done, so that this process never waits for it), except `exit`, `share` and `return`, which are
// obeyed at once (between two steps of a batch, or during start-up).
let queue = Promise.resolve();
process.on('message', (raw: ParentMessage) => {
  if (raw.type === 'exit') {
    ctx?.dispose();
    process.exit(0);
  }
  if (raw.type === 'share') return shareNativeThreads(raw.share);
  if (raw.type === 'return') {
    if (waiting.delete(batchKey(raw.configId, raw.shard))) send({ type: 'returned', configId: raw.configId, shard: raw.shard });
    return;
  }
  if (raw.type === 'shards') waiting.add(batchKey(raw.configId, raw.shards[0]!));
  queue = queue.then(() => handle(raw));
});
