import { describe, expect, it } from 'vitest';
import { aggregateShards } from './aggregate.js';
import { buildTable, makeSchema, readIpcFile, toIpcFile, type ColumnData } from './arrow.js';
import { SAMPLES_COLUMNS, STEPS_COLUMNS } from './schemas.js';

const meta = { version: 'test', studyId: 'agg-test-0000', spec: '{}' };
const P = 4;

/** A steps file of `samples` trajectories of P points; kde_gain is null at the last point (as in a shard's). */
function stepsFile(first: number, samples: number): Uint8Array {
  const rows = samples * P;
  const cols: Record<string, ColumnData> = {
    config_id: { values: new Array(rows).fill('c') },
    solver: { values: new Array(rows).fill('euler') },
    schedule: { values: new Array(rows).fill('polynomial') },
    steps: { values: new Int32Array(rows).fill(P - 1) },
    sample: { values: Int32Array.from({ length: rows }, (_, j) => first + Math.floor(j / P)) },
    step: { values: Int32Array.from({ length: rows }, (_, j) => j % P) },
    sigma: { values: Float64Array.from({ length: rows }, (_, j) => 10 / (1 + (j % P))) },
    nfe: { values: Int32Array.from({ length: rows }, (_, j) => j % P) },
  };
  for (const c of STEPS_COLUMNS.slice(8)) {
    const v = Float64Array.from({ length: rows }, (_, j) => value(c.name, first + Math.floor(j / P), j % P));
    cols[c.name] = { values: c.kind === 'float64' ? v : new Float32Array(v) };
  }
  // kde_gain's last points are null by their validity bits alone: the buffer holds a number there, as files written
  // by other tools may
  cols.kde_gain = { values: cols.kde_gain!.values as Float64Array, valid: Uint8Array.from({ length: rows }, (_, j) => (j % P === P - 1 ? 0 : 1)) };
  return toIpcFile(buildTable(STEPS_COLUMNS, makeSchema(STEPS_COLUMNS, 1, meta), rows, 1, cols));
}

/** The value of a metric for a sample at a step. */
function value(name: string, sample: number, step: number): number {
  return (1 + sample) * (1 + step) * (name === 'kde_gain' ? 0.01 : 1);
}

function samplesFile(first: number, samples: number): Uint8Array {
  const cols: Record<string, ColumnData> = {
    config_id: { values: new Array(samples).fill('c') },
    solver: { values: new Array(samples).fill('euler') },
    schedule: { values: new Array(samples).fill('polynomial') },
    steps: { values: new Int32Array(samples).fill(P - 1) },
    sample: { values: Int32Array.from({ length: samples }, (_, i) => first + i) },
    nfe_total: { values: new Int32Array(samples).fill(P - 1) },
    final: { values: new Float32Array(samples) },
    nn_point: { values: new Float32Array(samples) },
  };
  for (const c of SAMPLES_COLUMNS) if (!cols[c.name]) cols[c.name] = c.kind === 'int32' ? { values: new Int32Array(samples) } : { values: new Float64Array(samples).fill(2) };
  return toIpcFile(buildTable(SAMPLES_COLUMNS, makeSchema(SAMPLES_COLUMNS, 1, meta), samples, 1, cols));
}

describe('aggregateShards', () => {
  it("gives each step's mean and quantiles over the samples, nulls left out", async () => {
    const files: Record<string, Uint8Array> = { 'steps-0': stepsFile(0, 3), 'steps-1': stepsFile(3, 2), 'samples-0': samplesFile(0, 3), 'samples-1': samplesFile(3, 2) };
    const res = await aggregateShards(
      [{ configId: 'c', solver: 'euler', schedule: 'polynomial', steps: P - 1, role: 'study', nfe: P - 1, samplesKeys: ['samples-0', 'samples-1'], stepsKeys: ['steps-0', 'steps-1'] }],
      async (key) => files[key]!,
      meta,
    );
    const curves = readIpcFile(res.curves, 'curves.arrow')
      .toArray()
      .map((r) => r.toJSON() as Record<string, number | null>);
    expect(curves.map((r) => r.step)).toEqual([0, 1, 2, 3]);
    for (const r of curves) {
      const step = r.step!;
      // samples 0..4: (1 + sample) (1 + step), mean 3 (1 + step), median 3 (1 + step) within the sketch's accuracy
      expect(r.x_norm_mean).toBeCloseTo(3 * (1 + step), 10);
      expect(Math.abs(r.x_norm_p50! - 3 * (1 + step)) / (3 * (1 + step))).toBeLessThan(0.006);
      if (step === P - 1) {
        expect(r.kde_gain_mean).toBeNull();
        expect(r.kde_gain_p50).toBeNull();
      } else expect(r.kde_gain_mean).toBeCloseTo(0.03 * (1 + step), 12);
    }
  });
});
