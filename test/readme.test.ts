import { SOLVER_NAMES } from '@trajlab/core';
import { CURVE_METRICS, SAMPLES_COLUMNS, STATES_COLUMNS, STEPS_COLUMNS, SUMMARY_METRICS } from '@trajlab/results';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers.js';

const readme = readFileSync(join(REPO, 'README.md'), 'utf8');

describe('README stays true to the code', () => {
  it('starts with a Quick start holding the two fresh-machine commands that CI runs', () => {
    const quick = readme.slice(readme.indexOf('## Quick start'));
    expect(quick).toContain('pnpm install && pnpm trajlab run examples/quickstart.yaml');
    expect(quick).toContain('pnpm install && pnpm test');
    expect(readFileSync(join(REPO, '.ci/run'), 'utf8')).toMatch(/pnpm test/);
  });

  it('documents every output column and every summarised metric', () => {
    for (const c of [...STEPS_COLUMNS, ...SAMPLES_COLUMNS, ...STATES_COLUMNS]) expect(readme, c.name).toContain(`\`${c.name}\``);
    for (const m of [...SUMMARY_METRICS, ...CURVE_METRICS]) expect(readme, m).toContain(m);
  });

  it('lists every registered solver in the solver table', () => {
    for (const s of SOLVER_NAMES) expect(readme.includes(`| \`${s}\` |`), s).toBe(true);
  });
});
