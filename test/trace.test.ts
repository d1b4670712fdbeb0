import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TraceEvent } from '@trajlab/runner';
import { cliAsync, tempDir, writeSpec } from './helpers.js';

const spec = {
  name: 'trace-test',
  samples: 12,
  shardSize: 2,
  dataset: { kind: 'two-moons', n: 200 },
  solvers: [
    { solver: 'euler', steps: 6 },
    { solver: 'heun', steps: 4 },
  ],
};

interface Trace {
  traceEvents: TraceEvent[];
}

/** Every shard file's manifest under `out` (config/shard -> its text: the files' sha256 and row counts). */
function manifests(out: string): Map<string, string> {
  const [studyId] = readdirSync(out);
  const shards = join(out, studyId!, 'shards');
  const found = new Map<string, string>();
  for (const config of readdirSync(shards)) {
    for (const f of readdirSync(join(shards, config)).filter((n) => n.endsWith('.manifest.json'))) found.set(`${config}/${f.replace('.manifest.json', '')}`, readFileSync(join(shards, config, f), 'utf8'));
  }
  return found;
}

/** The spans of one process, by category, in time order. */
const spansOf = (trace: Trace, pid: number, cat: string) => trace.traceEvents.filter((e) => e.ph === 'X' && e.pid === pid && e.cat === cat).sort((a, b) => a.ts - b.ts);
const end = (e: TraceEvent) => e.ts + e.dur!;

describe('trajlab run --trace (real child processes)', () => {
  it("writes every process's start-up, every batch once and the aggregation, and the outputs are the same bytes", async () => {
    const dir = tempDir();
    const path = writeSpec(dir, spec);
    const two = await cliAsync(['run', path, '--out', join(dir, 'two'), '--workers', '2', '--quiet', '--trace', join(dir, 'two.json')]);
    expect(two.status, two.stderr).toBe(0);
    expect(two.stdout).toContain(`trace    ${join(dir, 'two.json')}`);
    const one = await cliAsync(['run', path, '--out', join(dir, 'one'), '--workers', '1', '--quiet', '--trace', join(dir, 'one.json')]);
    expect(one.status, one.stderr).toBe(0);
    // tracing changes nothing written, whoever computed which shard
    const written = manifests(join(dir, 'two'));
    expect(written.size).toBe(12);
    expect(manifests(join(dir, 'one'))).toEqual(written);

    for (const [file, processes] of [['two.json', 2], ['one.json', 1]] as const) {
      const trace = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Trace;
      const names = trace.traceEvents.filter((e) => e.ph === 'M' && e.name === 'process_name');
      expect(names.map((e) => e.args!.name), file).toEqual(processes === 2 ? ['trajlab run', 'shard process 1'] : ['trajlab run']);
      const main = names[0]!.pid;
      for (const e of trace.traceEvents.filter((x) => x.ph === 'X')) {
        expect(e.dur, e.name).toBeGreaterThanOrEqual(0);
        expect(e.args!.cpu_ms, e.name).toBeGreaterThanOrEqual(0);
        expect(names.map((n) => n.pid)).toContain(e.pid);
      }
      // each process's start-up, in the order it does it
      expect(spansOf(trace, main, 'start-up').map((e) => e.name)).toEqual(['modules', 'resolve', 'backend', 'context']);
      if (processes === 2) expect(spansOf(trace, names[1]!.pid, 'start-up').map((e) => e.name)).toEqual(['modules', 'backend', 'resolve', 'context']);

      // every shard in exactly one batch, of one process, which computes its batches one after the other, after its
      // start-up
      const batches = trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'batch');
      const shards = batches.flatMap((b) => (b.args!.shards as string[]).map((s) => `${b.args!.config as string}/${s}`));
      expect([...shards].sort(), file).toEqual([...written.keys()].sort());
      for (const b of batches) expect(b.args!.samples).toBe(2 * (b.args!.shards as string[]).length);
      for (const { pid } of names) {
        const own = spansOf(trace, pid, 'batch');
        expect(own.length, `${file}: process ${pid} computed`).toBeGreaterThan(0);
        expect(own[0]!.ts).toBeGreaterThanOrEqual(end(spansOf(trace, pid, 'start-up').at(-1)!));
        for (let i = 1; i < own.length; i++) expect(own[i]!.ts).toBeGreaterThanOrEqual(end(own[i - 1]!));
      }
      // with shard processes, the command folds finished shards' files while others still compute: each file at most
      // once, in its own process; with none, everything is folded by the aggregation
      const folds = trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'fold');
      if (processes === 1) expect(folds).toEqual([]);
      else expect(folds.length).toBeGreaterThan(0);
      for (const f of folds) {
        expect(f.pid).toBe(main);
        expect(f.name).toMatch(/\/shards\/[^/]+\/\d+-\d+\.(samples|steps)\.arrow$/);
        expect(written.has(f.name.split('/shards/')[1]!.replace(/\.(samples|steps)\.arrow$/, ''))).toBe(true);
      }
      expect(new Set(folds.map((f) => f.name)).size).toBe(folds.length);
      // the aggregation and the report come after the last batch, in this process
      const [aggregation, report] = spansOf(trace, main, 'aggregation');
      expect([aggregation?.name, report?.name]).toEqual(['aggregation', 'report']);
      expect(aggregation!.ts).toBeGreaterThanOrEqual(Math.max(...batches.map(end)));
      expect(report!.ts).toBeGreaterThanOrEqual(end(aggregation!));
    }
  });

  it('refuses a trace file that cannot be written before it computes anything: exit 2 naming it; a failed run writes its timeline so far', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, spec);
    const where = join(dir, 'no-such-dir', 'trace.json');
    const res = await cliAsync(['run', path, '--out', join(dir, 'out'), '--workers', '2', '--quiet', '--trace', where]);
    expect(res.status).toBe(2);
    expect(res.stderr).toContain(`trajlab: invalid input: --trace ${where}: cannot write it`);
    expect(existsSync(join(dir, 'out'))).toBe(false);
    // a run that fails still writes its timeline up to the failure: here a refused spec, its failed resolve included
    const refused = writeSpec(dir, { ...spec, name: 'trace-refused', samples: -1 }, 'refused.yaml');
    const failed = await cliAsync(['run', refused, '--out', join(dir, 'out'), '--workers', '2', '--quiet', '--trace', join(dir, 'failed.json')]);
    expect(failed.status).toBe(2);
    expect(failed.stderr).toMatch(/samples: Too small/);
    const partial = JSON.parse(readFileSync(join(dir, 'failed.json'), 'utf8')) as Trace;
    expect(partial.traceEvents.filter((e) => e.ph === 'X').map((e) => e.name)).toEqual(['modules', 'resolve']);
    expect(existsSync(join(dir, 'out'))).toBe(false);
    const empty = await cliAsync(['run', path, '--out', join(dir, 'out'), '--trace=']);
    expect(empty.status).toBe(2);
    expect(empty.stderr).toMatch(/--trace needs a file name/);
  });
});
