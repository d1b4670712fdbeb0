/**
 * A host's idle cores lent to its busy workers at a study's tail. When the queue runs dry, the workers that finish
 * first sit idle while the others compute the study's last shards on one core each. Every worker of a host records in
 * Redis how many shard processes it has and how many of them are computing; a worker whose processes compute while
 * others of its host have been idle for a moment lets each of them use (the host's usable processes / those
 * computing) times its native threads (shareNativeThreads), as `trajlab run --workers N` does (runShards). The bits
 * never depend on the thread count.
 *
 * A host is a hostname: the workers of one machine, or of one container (containers have hostnames of their own, and
 * may have CPU quotas of their own: their cores are not lent to each other).
 */
import { KEY_PREFIX } from '@trajlab/queue';
import type { Redis } from 'ioredis';
import { availableParallelism } from 'node:os';

/** What one worker of a host records. */
export interface WorkerCores {
  /** Its shard processes. */
  processes: number;
  /** Those holding a job. */
  computing: number;
  /** When `computing` last changed (ms since the epoch). */
  since: number;
}

/**
 * How long a worker's processes must have been idle for their cores to count as free: between two jobs a process may
 * be idle for a few milliseconds, which is no reason to lend its core. @defaultValue 100 ms
 */
export const IDLE_GRACE_MS = 100;

/**
 * The share of cores each computing process of a host may use: the host's processes that compute, or have been idle
 * for at least `graceMs`, over those that compute, rounded down; 1 when none computes.
 */
export function hostShare(workers: readonly WorkerCores[], now: number, graceMs = IDLE_GRACE_MS): number {
  let computing = 0;
  let usable = 0;
  for (const w of workers) {
    computing += w.computing;
    usable += w.computing + (now - w.since >= graceMs ? Math.max(0, w.processes - w.computing) : 0);
  }
  return computing > 0 ? Math.max(1, Math.floor(usable / computing)) : 1;
}

/** A worker's record as read from Redis, or null when it is not one (skipped: Redis is shared, its keys are not ours alone). */
export function parseRecord(text: string): WorkerCores | null {
  try {
    const { processes, computing, since } = JSON.parse(text) as Partial<WorkerCores>;
    const count = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 4096;
    if (!count(processes) || !count(computing) || computing > processes || typeof since !== 'number' || !Number.isFinite(since)) return null;
    return { processes, computing, since };
  } catch {
    return null;
  }
}

/** Redis keys of a host's workers: the set of their ids, and each one's record (expiring unless refreshed). */
export const hostKeys = {
  workers: (host: string) => `${KEY_PREFIX}:host:${host}:workers`,
  worker: (host: string, id: string) => `${KEY_PREFIX}:host:${host}:worker:${id}`,
};

/** Options of HostCores. */
export interface HostCoresOptions {
  /** How often a worker with computing processes reads its host's records. @defaultValue 100 ms */
  pollMs?: number;
  /** Lifetime of a worker's record, refreshed every third of it: a worker that died stops counting after it. @defaultValue 6 s */
  ttlMs?: number;
  /** See IDLE_GRACE_MS. @defaultValue IDLE_GRACE_MS */
  graceMs?: number;
  /** The largest share: no process gets more threads than the host has cores. @defaultValue os.availableParallelism() */
  maxShare?: number;
}

/**
 * One worker's part: it records its processes and those computing (setComputing), and while some compute it reads its
 * host's records and tells `onShare` the share of cores they may use whenever that changes (back to 1 when none of
 * its processes computes any more).
 */
export class HostCores {
  private computing = 0;
  private since = Date.now();
  private share = 1;
  private poller: NodeJS.Timeout | null = null;
  private readonly refresher: NodeJS.Timeout;
  private closed = false;
  private readonly pollMs: number;
  private readonly ttlMs: number;
  private readonly graceMs: number;
  private readonly maxShare: number;

  constructor(
    private readonly redis: Redis,
    private readonly host: string,
    private readonly id: string,
    private readonly processes: number,
    private readonly onShare: (share: number) => void,
    opts: HostCoresOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? 100;
    this.ttlMs = opts.ttlMs ?? 6000;
    this.graceMs = opts.graceMs ?? IDLE_GRACE_MS;
    this.maxShare = opts.maxShare ?? availableParallelism();
    this.record();
    this.refresher = setInterval(() => this.record(), this.ttlMs / 3);
    this.refresher.unref();
  }

  /** Its processes holding a job now: recorded at once, and read again by every busy worker of the host. */
  setComputing(n: number): void {
    if (this.closed || n === this.computing) return;
    this.computing = n;
    this.since = Date.now();
    this.record();
    if (n > 0) {
      this.poller ??= setInterval(() => void this.poll(), this.pollMs);
      void this.poll();
    } else {
      if (this.poller) clearInterval(this.poller);
      this.poller = null;
      this.setShare(1);
    }
  }

  /** Removes its record (the worker stops), waiting for Redis at most `waitMs`: a record left expires by itself. */
  async close(waitMs = 1000): Promise<void> {
    this.closed = true;
    clearInterval(this.refresher);
    if (this.poller) clearInterval(this.poller);
    const removed = this.redis.multi().del(hostKeys.worker(this.host, this.id)).srem(hostKeys.workers(this.host), this.id).exec();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([removed.catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
    clearTimeout(timer);
  }

  private record(): void {
    if (this.closed) return;
    const value: WorkerCores = { processes: this.processes, computing: this.computing, since: this.since };
    this.redis
      .multi()
      .set(hostKeys.worker(this.host, this.id), JSON.stringify(value), 'PX', this.ttlMs)
      .sadd(hostKeys.workers(this.host), this.id)
      .exec()
      .catch(() => {}); // no lending while Redis is away; the jobs themselves report it
  }

  private polling = false;

  private async poll(): Promise<void> {
    if (this.polling) return; // the last read has not come back (Redis slow or away)
    this.polling = true;
    try {
      const ids = await this.redis.smembers(hostKeys.workers(this.host));
      const values = ids.length ? await this.redis.mget(ids.map((id) => hostKeys.worker(this.host, id))) : [];
      const workers: WorkerCores[] = [];
      const gone: string[] = [];
      values.forEach((v, i) => {
        if (v === null) return gone.push(ids[i]!);
        const w = parseRecord(v);
        if (w) workers.push(w);
      });
      if (gone.length) await this.redis.srem(hostKeys.workers(this.host), ...gone);
      if (this.computing > 0 && !this.closed) this.setShare(Math.min(this.maxShare, hostShare(workers, Date.now(), this.graceMs)));
    } catch {
      // Redis away: keep the share as it is
    } finally {
      this.polling = false;
    }
  }

  private setShare(share: number): void {
    if (share === this.share) return;
    this.share = share;
    this.onShare(share);
  }
}
