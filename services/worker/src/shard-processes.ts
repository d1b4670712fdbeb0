import type { ShardManifest } from '@trajlab/runner';
import type { Job } from 'bullmq';
import { fork, type ChildProcess } from 'node:child_process';
import { namedError, type FromShardProcess, type ToShardProcess } from './messages.js';

/** A job handed to a shard process and not yet answered. */
interface Held {
  job: Job;
  resolve(manifest: ShardManifest): void;
  reject(err: Error): void;
}

/** One forked shard process and the jobs it holds. */
interface Slot {
  child: ChildProcess;
  held: Map<string, Held>;
  ready: Promise<void>;
  /** The share of cores last sent to it (1: its own threads). */
  share: number;
}

/** Pause before starting a shard process again after one died before it was ready (a broken install, say). */
const RESTART_DELAY_MS = 2000;

/**
 * The worker's shard processes (`entry` forked `count` times, replaced when one dies). A job goes to the process
 * holding the fewest, so the worker's concurrency (jobs held at once) spreads evenly over them.
 */
export class ShardProcesses {
  private readonly slots: Slot[] = [];
  private closing = false;
  private readonly batchAtMost: number;
  /** The share of cores lent to the processes holding a job (shareCores). */
  private lent = 1;
  private computing = 0;
  /** Told the number of processes holding a job whenever it changes. @defaultValue nothing */
  onComputing: (processes: number) => void = () => {};

  /**
   * `jobsPerProcess`: the jobs each process holds at once (TRAJLAB_JOBS_PER_PROCESS); a batch takes at most half of
   * them, so that the next batch is there when one is computed and its uploads overlap a computation (with 2: one job
   * at a time).
   */
  constructor(
    private readonly entry: string,
    count: number,
    private readonly log: (line: string) => void,
    jobsPerProcess: number,
  ) {
    this.batchAtMost = Math.max(1, Math.floor(jobsPerProcess / 2));
    for (let i = 0; i < count; i++) this.slots.push(this.spawn());
  }

  /** Resolves with the number of processes once each has loaded (or died trying). */
  async started(): Promise<number> {
    await Promise.all(this.slots.map((s) => s.ready));
    return this.slots.length;
  }

  /**
   * Runs a shard job in the process holding the fewest; resolves with its manifest. `checked`: no complete files of
   * the shard were found in the store just before.
   */
  run(job: Job, checked: boolean): Promise<ShardManifest> {
    const slot = this.slots.reduce((a, b) => (b.held.size < a.held.size ? b : a));
    const id = String(job.id);
    return new Promise<ShardManifest>((resolve, reject) => {
      slot.held.set(id, { job, resolve, reject });
      slot.child.send({ type: 'job', id, data: job.data, checked, batchAtMost: this.batchAtMost } satisfies ToShardProcess, (err) => {
        if (!err) return;
        slot.held.delete(id);
        this.heldChanged();
        reject(new Error(`job ${id}: could not be handed to shard process ${slot.child.pid} (${err.message})`));
      });
      this.heldChanged();
    });
  }

  /**
   * Lets each process holding a job use `share` times its native threads from its next step on (those idle get their
   * own threads back), until another share is given: see HostCores.
   */
  shareCores(share: number): void {
    this.lent = share;
    this.applyShares();
  }

  /** Sends each process the share it should have now, and tells onComputing of a new count of busy processes. */
  private heldChanged(): void {
    const computing = this.slots.filter((s) => s.held.size > 0).length;
    if (computing !== this.computing) {
      this.computing = computing;
      this.onComputing(computing);
    }
    this.applyShares();
  }

  private applyShares(): void {
    for (const slot of this.slots) {
      const share = slot.held.size > 0 ? this.lent : 1;
      if (share === slot.share || !slot.child.connected) continue;
      slot.share = share;
      slot.child.send({ type: 'share', share } satisfies ToShardProcess);
    }
  }

  /** Stops the processes (their held jobs are expected to be finished). */
  close(): void {
    this.closing = true;
    for (const s of this.slots) s.child.kill();
  }

  private spawn(): Slot {
    // execArgv is this process's (with the TypeScript loader where the sources run, see scripts/compiled.mjs)
    const child = fork(this.entry, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const held = new Map<string, Held>();
    let wasReady = false;
    let markReady: () => void = () => {};
    const slot: Slot = { child, held, ready: new Promise<void>((r) => (markReady = r)), share: 1 };
    child.on('message', (m: FromShardProcess) => {
      if (m.type === 'ready') {
        wasReady = true;
        return markReady();
      }
      if (m.type === 'warmed-up') return this.log(`shard process ${child.pid} warmed up in ${m.seconds.toFixed(2)} s`);
      if (m.type === 'warm-up-failed') return this.log(`shard process ${child.pid}: warm-up failed (${m.message})`);
      if (m.type === 'batched') return this.log(`shard process ${child.pid}: jobs ${m.ids.join(', ')} computed as one batch`);
      const h = held.get(m.id);
      if (!h) return;
      if (m.type === 'progress') {
        h.job.updateProgress({ ...m.progress }).catch(() => {});
        return;
      }
      held.delete(m.id);
      this.heldChanged();
      if (m.type === 'done') h.resolve(m.manifest);
      else h.reject(namedError(m.name, m.message));
    });
    child.on('error', (err) => this.log(`shard process ${child.pid}: ${err.message}`));
    child.on('exit', (code, signal) => {
      markReady();
      // its jobs fail (and are retried, up to their attempts); a new process takes its place
      for (const [id, h] of held) h.reject(new Error(`shard process ${child.pid} exited (${signal ?? code}) while running job ${id}`));
      held.clear();
      this.heldChanged();
      if (this.closing) return;
      // one that died at start-up is started again after a pause, not in a tight loop (jobs handed to it meanwhile
      // fail, naming it, and are retried)
      const delay = wasReady ? 0 : RESTART_DELAY_MS;
      this.log(`shard process ${child.pid} exited (${signal ?? code})${wasReady ? '' : ' before it was ready'}; starting another${delay ? ` in ${delay / 1000} s` : ''}`);
      setTimeout(() => {
        const k = this.slots.indexOf(slot);
        if (!this.closing && k >= 0) this.slots[k] = this.spawn();
      }, delay);
    });
    return slot;
  }
}
