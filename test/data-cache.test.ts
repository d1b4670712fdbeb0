import { DataCacheError, privateCacheDir } from '@trajlab/study';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliAsync, tempDir, writeSpec } from './helpers.js';

const uid = typeof process.getuid === 'function' ? process.getuid() : null;

// The default data cache lives in the shared temporary directory, and what is in it is trusted (downloaded datasets,
// decoded copies, pruning tables): it must be this user's alone.
describe.skipIf(uid === null)('the default data cache, a directory of this user alone', () => {
  it('is created with access for its user alone, and used again as it is', () => {
    const dir = join(tempDir(), 'cache');
    expect(privateCacheDir(dir, uid!)).toBe(dir);
    expect(lstatSync(dir).mode & 0o777).toBe(0o700);
    expect(privateCacheDir(dir, uid!)).toBe(dir);
  });

  it('that cannot be made (its parent missing or read-only) is given as it is: there is nothing in it to trust', () => {
    const dir = join(tempDir(), 'missing-parent', 'cache');
    expect(privateCacheDir(dir, uid!)).toBe(dir);
    expect(existsSync(dir)).toBe(false);
  });

  it('is refused, naming it, when others can write it, when a link stands in its place or when another user owns it', () => {
    const base = tempDir();
    const open = join(base, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(() => privateCacheDir(open, uid!)).toThrow(DataCacheError);
    expect(() => privateCacheDir(open, uid!)).toThrow(`${open}: the default data cache can be written by other users (mode 777); set TRAJLAB_DATA_CACHE`);
    const target = join(base, 'target');
    privateCacheDir(target, uid!);
    const link = join(base, 'link');
    symlinkSync(target, link);
    expect(() => privateCacheDir(link, uid!)).toThrow(/link: the default data cache is not a directory/);
    if (uid === 0) {
      const foreign = join(base, 'foreign');
      mkdirSync(foreign, { mode: 0o700 });
      chownSync(foreign, 54321, 54321);
      expect(() => privateCacheDir(foreign, 0)).toThrow(/foreign: the default data cache belongs to another user \(uid 54321\)/);
    }
  });

  it('trajlab run stops with a clear error when the default is not private, and runs with TRAJLAB_DATA_CACHE set', async () => {
    const dir = tempDir();
    // a temporary directory of its own, in which another user made the default cache writable by all
    const tmp = join(dir, 'tmp');
    const cache = join(tmp, `trajlab-data-cache-${uid}`);
    mkdirSync(cache, { recursive: true });
    chmodSync(cache, 0o777);
    // pruning keeps its tables in the data cache
    const spec = writeSpec(dir, {
      name: 'data-cache',
      samples: 4,
      shardSize: 4,
      dataset: { kind: 'gmm', dim: 6, components: 3, n: 300, seed: 2 },
      denoiser: { kind: 'optimal', pruning: { rank: 3 } },
      solvers: [{ solver: 'euler', steps: 4 }],
      keepStates: 0,
    });
    const env = { ...process.env, TMPDIR: tmp, TRAJLAB_DATA_CACHE: '' };
    const refused = await cliAsync(['run', spec, '--out', join(dir, 'refused'), '--workers', '1', '--quiet'], { env });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`trajlab: ${cache}: the default data cache can be written by other users (mode 777); set TRAJLAB_DATA_CACHE to a directory of your own`);
    expect(refused.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    const own = join(dir, 'own-cache');
    const ran = await cliAsync(['run', spec, '--out', join(dir, 'ran'), '--workers', '1', '--quiet'], { env: { ...env, TRAJLAB_DATA_CACHE: own } });
    expect(ran.status, ran.stderr).toBe(0);
    expect(existsSync(join(own, 'pruning'))).toBe(true);
  });
});
