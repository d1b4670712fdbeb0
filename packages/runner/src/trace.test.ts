import { describe, expect, it } from 'vitest';
import { batchSpan, epochMicros, spanStart, traceText, TraceRecorder, type TraceEvent } from './trace.js';

/** Keeps this thread busy for `ms` of wall time. */
function spin(ms: number): number {
  const until = performance.now() + ms;
  let x = 0;
  while (performance.now() < until) x += Math.sqrt(x + 1);
  return x;
}

describe('TraceRecorder', () => {
  it('records a span with its wall time and the CPU time used meanwhile, also when the work fails', async () => {
    const trace = new TraceRecorder();
    const before = epochMicros();
    expect(await trace.span('busy', 'batch', () => spin(30), { config: 'c' })).toBeGreaterThan(0);
    await expect(trace.span('failing', 'batch', () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    const [busy, failing] = trace.recorded();
    expect(busy).toMatchObject({ name: 'busy', cat: 'batch', ph: 'X', pid: process.pid, tid: 0, args: { config: 'c' } });
    expect(busy!.ts).toBeGreaterThanOrEqual(before);
    expect(busy!.dur).toBeGreaterThanOrEqual(30_000);
    // a busy loop on this thread: its CPU time is most of its wall time (the machine may be shared)
    expect(busy!.args!.cpu_ms).toBeGreaterThan(10);
    expect(failing!.ts).toBeGreaterThanOrEqual(busy!.ts + busy!.dur!);
    // take hands the events over once
    expect(trace.take()).toHaveLength(2);
    expect(trace.take()).toEqual([]);
  });

  it('records nothing when disabled, and still runs the work', async () => {
    const trace = new TraceRecorder(false);
    expect(await trace.span('x', 'batch', () => 7)).toBe(7);
    trace.end(spanStart(), 'y', 'start-up');
    trace.add([{ name: 'z', cat: 'batch', ph: 'X', ts: 1, dur: 1, pid: 1, tid: 0 }]);
    expect(trace.recorded()).toEqual([]);
  });

  it("names this process and numbers the others by their first event; the file's events are in time order", () => {
    const span = (pid: number, ts: number): TraceEvent => ({ name: 's', cat: 'batch', ph: 'X', ts, dur: 5, pid, tid: 0 });
    const text = traceText([span(process.pid + 2, 30), span(process.pid, 40), span(process.pid + 1, 35), span(process.pid + 2, 10)], 'trajlab run');
    const { traceEvents } = JSON.parse(text) as { traceEvents: TraceEvent[] };
    expect(traceEvents.filter((e) => e.ph === 'M').map((e) => [e.pid - process.pid, e.args!.name])).toEqual([
      [0, 'trajlab run'],
      [2, 'shard process 1'],
      [1, 'shard process 2'],
    ]);
    expect(traceEvents.filter((e) => e.ph === 'X').map((e) => e.ts)).toEqual([10, 30, 35, 40]);
  });

  it('names a batch by its config and first shard, with its shards and samples', () => {
    expect(batchSpan('euler-s3', [{ name: 'a', count: 2 }])).toEqual({ name: 'euler-s3 a', args: { config: 'euler-s3', shards: ['a'], samples: 2 } });
    expect(batchSpan('euler-s3', [{ name: 'a', count: 2 }, { name: 'b', count: 1 }]).name).toBe('euler-s3 a +1');
  });
});
