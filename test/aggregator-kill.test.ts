import { runStudyEmbedded } from '@trajlab/runner';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliAsync, REPO, tempDir, writeSpec } from './helpers.js';

describe('aggregation killed mid-merge', () => {
  it('leaves no partial summary under its final name, and a rerun produces the same bytes as an undisturbed merge', async () => {
    const dir = tempDir();
    // ~400k step rows, so the merge takes a while
    const spec = writeSpec(dir, { name: 'agg-kill', samples: 4000, shardSize: 500, dataset: { kind: 'rings', n: 50 }, solvers: [{ solver: 'euler', steps: 100 }], keepStates: 0, metrics: { kde: false, pca: false } });
    const out = join(dir, 'out');
    const res = await runStudyEmbedded(spec, { out });
    const summary = readFileSync(res.summary);
    const curves = readFileSync(res.curves);
    // how long an undisturbed `trajlab aggregate` takes on this machine, then a second one killed half-way through
    rmSync(res.summary);
    rmSync(res.curves);
    const t0 = Date.now();
    const first = await cliAsync(['aggregate', res.studyId, '--out', out]);
    expect(first.status, first.stderr).toBe(0);
    const duration = Date.now() - t0;
    expect(readFileSync(res.summary).equals(summary)).toBe(true);
    rmSync(res.summary);
    rmSync(res.curves);
    const child = spawn(process.execPath, [join(REPO, 'services/coordinator/bin/trajlab.mjs'), 'aggregate', res.studyId, '--out', out], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, duration * 0.6));
    const killedBeforeEnd = child.exitCode === null;
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(killedBeforeEnd).toBe(true);
    const summaryDir = join(res.studyDir, 'summary');
    // nothing partial under a final name: each file is either absent or complete, and no temporary file remains visible as final
    for (const f of ['summary.arrow', 'curves.arrow']) {
      if (existsSync(join(summaryDir, f))) expect(readFileSync(join(summaryDir, f)).equals(f === 'summary.arrow' ? summary : curves)).toBe(true);
    }
    expect(readdirSync(summaryDir).filter((f) => !f.includes('.tmp-') && f.endsWith('.arrow')).every((f) => ['summary.arrow', 'curves.arrow'].includes(f))).toBe(true);
    const again = await cliAsync(['aggregate', res.studyId, '--out', out]);
    expect(again.status, again.stderr).toBe(0);
    expect(readFileSync(res.summary).equals(summary)).toBe(true);
    expect(readFileSync(res.curves).equals(curves)).toBe(true);
  });
});
