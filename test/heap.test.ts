import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { COMPUTE_HEAP_GROWING_PERCENT, GcChoiceError, gcFromEnv, tuneHeapForCompute } from '@trajlab/backend';
import { describe, expect, it } from 'vitest';
import { arrowFiles, expectRunRefusesEnv, fileSha256, REPO, tempDir, writeSpec } from './helpers.js';

const FMNIST = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';

/**
 * Full (mark-compact) collections in a real `trajlab run` of a 512-trajectory Fashion-MNIST study with one process
 * (as in `pnpm bench`, metrics off), counted from V8's --trace-gc lines, with TRAJLAB_GC set to `gc`.
 */
function fullCollections(specPath: string, out: string, gc: string): number {
  const res = spawnSync(process.execPath, ['--trace-gc', join(REPO, 'services/coordinator/bin/trajlab.mjs'), 'run', specPath, '--out', out, '--workers', '1', '--quiet'], {
    cwd: REPO,
    env: { ...process.env, TRAJLAB_GC: gc },
    encoding: 'utf8',
    timeout: 600_000,
  });
  expect(res.status, res.stderr).toBe(0);
  return res.stdout.split('\n').filter((line) => line.includes('Mark-Compact')).length;
}

describe('V8 heap growth in a computing process (TRAJLAB_GC)', () => {
  it('is compute by default; default leaves V8 as it is; anything else is refused by name', () => {
    expect(gcFromEnv({})).toBe('compute');
    expect(gcFromEnv({ TRAJLAB_GC: ' Default ' })).toBe('default');
    expect(tuneHeapForCompute({ TRAJLAB_GC: 'default' })).toBe(false);
    expect(() => gcFromEnv({ TRAJLAB_GC: 'off' })).toThrow(GcChoiceError);
    expect(() => tuneHeapForCompute({ TRAJLAB_GC: 'off' })).toThrow(/TRAJLAB_GC must be one of compute, default; got 'off'/);
    expect(COMPUTE_HEAP_GROWING_PERCENT).toBe(300);
  });

  // CI installs the Debian package; elsewhere this part is skipped without it
  it.skipIf(!existsSync(FMNIST) && !process.env.CI)(
    'a study run with the compute setting makes far fewer full collections than with V8 own heuristics, with the same files',
    () => {
      const dir = tempDir('trajlab-gc-');
      const spec = writeSpec(dir, {
        name: 'gc',
        samples: 256,
        shardSize: 32,
        dataset: { kind: 'idx', uri: FMNIST, limit: 10000 },
        denoiser: { kind: 'optimal' },
        solvers: [
          { solver: 'euler', steps: 20 },
          { solver: 'heun', steps: 10 },
        ],
        keepStates: 0,
        metrics: { kde: false, nearest: false, pca: false, fillDenoised: false },
      });
      const plain = fullCollections(spec, join(dir, 'default'), 'default');
      const tuned = fullCollections(spec, join(dir, 'compute'), 'compute');
      // measured: 9-12 with V8's own growth factor (the limit falls to ~2.5x the ~10 MB live heap while the shards'
      // buffers count against it), 4-5 with the compute setting (limit ~4x); both include the start-up's 2-3
      expect(plain).toBeGreaterThanOrEqual(6);
      expect(tuned).toBeLessThanOrEqual(0.7 * plain);
      // the collector's schedule never reaches the numbers
      const [study] = readdirSync(join(dir, 'default'));
      const files = arrowFiles(join(dir, 'default', study!));
      expect(files.length).toBeGreaterThan(32);
      expect(arrowFiles(join(dir, 'compute', study!))).toEqual(files);
      for (const f of files) expect(fileSha256(join(dir, 'compute', study!, f)), f).toBe(fileSha256(join(dir, 'default', study!, f)));
    },
    120_000,
  );

  it('trajlab run refuses an unknown TRAJLAB_GC as an input error before it writes anything', () => {
    expectRunRefusesEnv({ TRAJLAB_GC: 'aggressive' }, /TRAJLAB_GC must be one of compute, default; got 'aggressive'/);
  });
});
