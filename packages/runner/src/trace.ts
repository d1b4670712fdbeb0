/**
 * A timeline of a `trajlab run` (`--trace FILE`): what each of its processes did when, in the Trace Event Format that
 * Perfetto (ui.perfetto.dev) and Chrome's about:tracing open, and that is plain JSON for pandas or DuckDB. Each span
 * carries the CPU time its whole process used meanwhile (all threads: the collector's and compiler's helpers too), so
 * a timeline shows both where the wall time went and what each process spent on it.
 *
 * Only Node's own modules are imported here, so that shard-process.ts (which early-start.ts loads before anything
 * else) can name its types without bringing anything to load.
 */
import { writeFileSync } from 'node:fs';

/** What a span carries beside its times (`cpu_ms` is added to every span). */
export type SpanArgs = Record<string, string | number | string[]>;

/** One event: a complete span (`ph` 'X', `dur` set) or a process's name (`ph` 'M', name `process_name`). */
export interface TraceEvent {
  name: string;
  /** The span's kind: `start-up`, `batch`, `fold` (a shard file folded while shards still run), `aggregation` or `metadata`. */
  cat: string;
  ph: 'X' | 'M';
  /** Start, in microseconds since the Unix epoch (one clock for every process of the run). */
  ts: number;
  /** Length in microseconds (spans only). */
  dur?: number;
  pid: number;
  tid: number;
  args?: SpanArgs;
}

/** The clock of every event: microseconds since the Unix epoch, at the resolution of performance.now(). */
export function epochMicros(sinceOrigin: number = performance.now()): number {
  return Math.round((performance.timeOrigin + sinceOrigin) * 1000);
}

/** CPU time of this whole process (every thread) so far, in milliseconds. */
export function processCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Where a span began: its time (epochMicros) and the process's CPU time then (processCpuMs). */
export interface SpanStart {
  ts: number;
  cpuMs: number;
}

/** Where this process began: its time origin, with no CPU used yet. */
export function processStart(): SpanStart {
  return { ts: epochMicros(0), cpuMs: 0 };
}

/** Now, as the start of a span. */
export function spanStart(): SpanStart {
  return { ts: epochMicros(), cpuMs: processCpuMs() };
}

/**
 * The spans one process records. A disabled recorder records nothing and costs nothing but the calls, so the code
 * that traces need not ask whether it does.
 */
export class TraceRecorder {
  private events: TraceEvent[] = [];

  /** @param enabled - whether spans are recorded. @defaultValue true */
  constructor(readonly enabled = true) {}

  /**
   * Records the span `name` from `start` to `end` (now unless given), with `args` and the process's CPU time meanwhile
   * (`cpu_ms`).
   */
  end(start: SpanStart, name: string, cat: string, args: SpanArgs = {}, end: SpanStart = spanStart()): void {
    if (this.enabled) this.events.push(spanEvent(start, end, name, cat, args));
  }

  /** Runs `work` as the span `name` (recorded whether it succeeds or fails). */
  async span<T>(name: string, cat: string, work: () => Promise<T> | T, args?: SpanArgs): Promise<T> {
    if (!this.enabled) return work();
    const start = spanStart();
    try {
      return await work();
    } finally {
      this.end(start, name, cat, args);
    }
  }

  /** Runs `work`, the computing of a batch of `shards` of config `configId`, as its span (batchSpan). */
  batch<T>(configId: string, shards: readonly { name: string; count: number }[], work: () => Promise<T>): Promise<T> {
    const { name, args } = batchSpan(configId, shards);
    return this.span(name, 'batch', work, args);
  }

  /** Adds events another process recorded (a shard process's, sent over IPC). */
  add(events: readonly TraceEvent[] | undefined): void {
    if (this.enabled && events) this.events.push(...events);
  }

  /** The events recorded since the last take, handed over (a shard process sends them with its next message). */
  take(): TraceEvent[] {
    const taken = this.events;
    this.events = [];
    return taken;
  }

  /** Every event recorded so far (not taken). */
  recorded(): readonly TraceEvent[] {
    return this.events;
  }
}

/**
 * The span `name` of this process from `start` to `end` on thread `tid` (0: the main one; a distributed worker's jobs,
 * which overlap, each get a thread of their own), with `args` and the process's CPU time meanwhile (`cpu_ms`).
 */
export function spanEvent(start: SpanStart, end: SpanStart, name: string, cat: string, args: SpanArgs = {}, tid = 0): TraceEvent {
  return { name, cat, ph: 'X', ts: start.ts, dur: Math.max(0, end.ts - start.ts), pid: process.pid, tid, args: { ...args, cpu_ms: round3(end.cpuMs - start.cpuMs) } };
}

/** A batch's span: named by its config and first shard (and how many more), its shards and samples as arguments. */
export function batchSpan(configId: string, shards: readonly { name: string; count: number }[]): { name: string; args: SpanArgs } {
  const more = shards.length > 1 ? ` +${shards.length - 1}` : '';
  return { name: `${configId} ${shards[0]?.name ?? ''}${more}`, args: { config: configId, shards: shards.map((s) => s.name), samples: shards.reduce((n, s) => n + s.count, 0) } };
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;

/**
 * The trace file's text: `events` in time order after one `process_name` event per process, `mainName` for this
 * process and `shard process <k>` for the others, numbered in the order their first event began.
 */
export function traceText(events: readonly TraceEvent[], mainName: string): string {
  const spans = [...events].sort((a, b) => a.ts - b.ts || a.pid - b.pid);
  const pids = [...new Set([process.pid, ...spans.map((e) => e.pid)])];
  const others = pids.filter((p) => p !== process.pid);
  const names: TraceEvent[] = pids.map((pid) => ({ name: 'process_name', cat: 'metadata', ph: 'M', ts: 0, pid, tid: 0, args: { name: pid === process.pid ? mainName : `shard process ${others.indexOf(pid) + 1}` } }));
  return `${JSON.stringify({ traceEvents: [...names, ...spans], displayTimeUnit: 'ms' })}\n`;
}

/**
 * The trace file's text for a distributed study (`trajlab submit --watch --trace`): events of processes on several
 * hosts, each with `host` and `role` arguments. A process is a (host, pid): numbered 1, 2, ... in the order its first
 * event began (pids of different hosts may be the same) and named `<role> <pid> on <host>`; events in time order.
 */
export function distributedTraceText(events: readonly TraceEvent[]): string {
  const spans = [...events].sort((a, b) => a.ts - b.ts);
  const processes = new Map<string, { pid: number; name: string }>();
  const renumbered = spans.map((e) => {
    const host = String(e.args?.host ?? '');
    const key = `${host}\n${e.pid}`;
    let p = processes.get(key);
    if (!p) {
      p = { pid: processes.size + 1, name: `${String(e.args?.role ?? 'process')} ${e.pid} on ${host}` };
      processes.set(key, p);
    }
    return { ...e, pid: p.pid };
  });
  const names: TraceEvent[] = [...processes.values()].map(({ pid, name }) => ({ name: 'process_name', cat: 'metadata', ph: 'M', ts: 0, pid, tid: 0, args: { name } }));
  return `${JSON.stringify({ traceEvents: [...names, ...renumbered], displayTimeUnit: 'ms' })}\n`;
}

/** A trace file that cannot be written (a user's path: exit code 2 at the CLI). */
export class TraceFileError extends Error {
  override name = 'TraceFileError';
}

/**
 * Checks that `path` (the value of --trace) can be written by writing it empty, before a study begins, so that a bad
 * path, or none, is refused before anything is computed; throws TraceFileError naming it.
 */
export function claimTraceFile(path: string): void {
  if (path === '') throw new TraceFileError('--trace needs a file name');
  writeTraceFile(path, '');
}

/** Writes a trace file's `text` (traceText, distributedTraceText) to `path`; throws TraceFileError naming it. */
export function writeTraceFile(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (err) {
    throw new TraceFileError(`--trace ${path}: cannot write it (${err instanceof Error ? err.message : String(err)})`);
  }
}
