import { CURVES_COLUMNS, SAMPLES_COLUMNS, STATES_COLUMNS, STEPS_COLUMNS, SUMMARY_COLUMNS } from '@trajlab/results';
import { RecordBatchFileReader, Table as ArrowTable, Type, type Table } from 'apache-arrow';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rows, runSpec } from './helpers.js';

/** The contract's required columns and Arrow types, written out independently of our schema module. */
const CONTRACT = {
  steps: {
    config_id: 'Utf8', solver: 'Utf8', schedule: 'Utf8', steps: 'Int32', sample: 'Int32', step: 'Int32', sigma: 'Float64', nfe: 'Int32',
    x_norm: 'Float32', d_norm: 'Float32', dist_x_final: 'Float', dist_d_final: 'Float', dev_x: 'Float', dev_d: 'Float',
    cos_eps_final: 'Float', turn_angle: 'Float', score_dev: 'Float', kde_gain: 'Float',
  },
  samples: {
    config_id: 'Utf8', solver: 'Utf8', schedule: 'Utf8', steps: 'Int32', sample: 'Int32', nfe_total: 'Int32', chord: 'Float',
    path_length: 'Float', max_dev_x: 'Float', max_dev_ratio: 'Float', pca_var_1: 'Float', pca_var_2: 'Float', pca_var_3: 'Float',
    nn_index: 'Int32', nn_dist: 'Float', nn2_dist: 'Float', final: 'FixedSizeList<Float32>',
  },
  states: { config_id: 'Utf8', sample: 'Int32', step: 'Int32', sigma: 'Float64', x: 'FixedSizeList<Float32>', denoised: 'FixedSizeList<Float32>' },
} as const;

function typeName(t: Table['schema']['fields'][number]['type']): string {
  switch (t.typeId) {
    case Type.Utf8:
      return 'Utf8';
    case Type.Int:
      return `Int${(t as { bitWidth: number }).bitWidth}`;
    case Type.Float:
      return (t as { precision: number }).precision === 1 ? 'Float32' : 'Float64';
    case Type.FixedSizeList:
      return `FixedSizeList<${typeName((t as { children: { type: typeof t }[] }).children[0]!.type)}>`;
    default:
      return String(t);
  }
}

/** Opens bytes strictly as an Arrow IPC *file* (footer + magic), not a stream. */
function openFile(path: string): Table {
  const bytes = readFileSync(path);
  expect(bytes.subarray(0, 6).toString()).toBe('ARROW1');
  expect(bytes.subarray(bytes.length - 6).toString()).toBe('ARROW1');
  const reader = RecordBatchFileReader.from(bytes);
  const batches = [...reader];
  expect(reader.numRecordBatches).toBe(batches.length);
  return new ArrowTable(batches);
}

describe('Arrow outputs follow the contract', () => {
  it('every file is an Arrow IPC file with the contract columns, types, row counts and metadata', async () => {
    const res = await runSpec({
      name: 'arrow',
      samples: 5,
      shardSize: 3,
      dataset: { kind: 'swiss-roll', n: 40 },
      compare: { kind: 'gaussian', source: 'fit' },
      solvers: [{ solver: 'euler', schedule: 'polynomial', steps: [4] }],
      keepStates: 2,
    });
    const dir = join(res.studyDir, 'shards/euler-polynomial-rho7-s4');
    const files = readdirSync(dir).sort();
    expect(files).toEqual([
      '000000-000002.manifest.json', '000000-000002.samples.arrow', '000000-000002.states.arrow', '000000-000002.steps.arrow',
      '000003-000004.manifest.json', '000003-000004.samples.arrow', '000003-000004.steps.arrow',
    ]);
    for (const [kind, cols] of Object.entries(CONTRACT)) {
      const t = openFile(join(dir, `000000-000002.${kind}.arrow`));
      for (const [name, type] of Object.entries(cols)) {
        const field = t.schema.fields.find((f) => f.name === name);
        expect(field, `${kind}.${name}`).toBeDefined();
        const actual = typeName(field!.type);
        expect(type === 'Float' ? actual.startsWith('Float') : actual, `${kind}.${name}`).toBe(type === 'Float' ? true : type);
      }
      expect(t.schema.metadata.get('trajlab.study_id')).toBe(res.studyId);
      expect(t.schema.metadata.get('trajlab.version')).toMatch(/^\d+\.\d+\.\d+/);
      expect(JSON.parse(t.schema.metadata.get('trajlab.spec')!).spec.name).toBe('arrow');
      expect(t.numRows).toBe({ steps: 3 * 5, samples: 3, states: 2 * 5 }[kind]);
    }
    const samples = rows(openFile(join(dir, '000003-000004.samples.arrow')));
    expect(samples.map((r) => r.sample)).toEqual([3, 4]);
    expect((samples[0]!.final as number[]).length).toBe(2);
    const steps = rows(openFile(join(dir, '000000-000002.steps.arrow')));
    // Nulls where the contract says so: turn_angle at both ends, kde_gain at the end, cos_eps_final at the end.
    for (const r of steps.filter((r) => r.step === 0)) expect(r.turn_angle).toBeNull();
    for (const r of steps.filter((r) => r.step === 4)) expect([r.turn_angle, r.kde_gain, r.cos_eps_final]).toEqual([null, null, null]);
    for (const r of steps) expect(r.score_dev).not.toBeNull();
    // Our schema module declares exactly these files' columns.
    expect(openFile(join(dir, '000000-000002.steps.arrow')).schema.fields.map((f) => f.name)).toEqual(STEPS_COLUMNS.map((c) => c.name));
    expect(openFile(join(dir, '000000-000002.samples.arrow')).schema.fields.map((f) => f.name)).toEqual(SAMPLES_COLUMNS.map((c) => c.name));
    expect(openFile(join(dir, '000000-000002.states.arrow')).schema.fields.map((f) => f.name)).toEqual(STATES_COLUMNS.map((c) => c.name));
    const summary = openFile(res.summary);
    expect(summary.schema.fields.map((f) => f.name)).toEqual(SUMMARY_COLUMNS.map((c) => c.name));
    expect(summary.numRows).toBe(1);
    const curves = openFile(res.curves);
    expect(curves.schema.fields.map((f) => f.name)).toEqual(CURVES_COLUMNS.map((c) => c.name));
    expect(curves.numRows).toBe(5);
    expect(rows(summary)[0]!.samples).toBe(5);
  });
});
