import type { ChildMessage } from '@trajlab/runner';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startRunShardProcesses } from './early-start.js';

function spec(body: object): string {
  const dir = mkdtempSync(join(tmpdir(), 'trajlab-early-'));
  const path = join(dir, 'spec.json');
  writeFileSync(path, JSON.stringify(body));
  return path;
}

const good = { name: 'early-start', samples: 4, shardSize: 2, dataset: { kind: 'two-moons', n: 50 }, solvers: [{ solver: 'euler', steps: 3 }] };

describe('shard processes started before the command loads (real child processes)', () => {
  it('starts none for other commands, for one worker, or for arguments `trajlab run` refuses', () => {
    const path = spec(good);
    for (const argv of [
      ['validate', path],
      ['run', path, '--workers', '1'],
      ['run', '--workers', '2'],
      ['run', path, '--workers', '0'],
      ['run', path, '--workers', 'two'],
      ['run', path, '--workers', '2', '--no-such-flag'],
      ['run', path, 'extra', '--workers', '2'],
    ]) {
      expect(startRunShardProcesses(argv), argv.join(' ')).toEqual([]);
    }
  });

  it('starts workers - 1 processes that resolve the study on their own and report ready, or the refused field', async () => {
    const started = startRunShardProcesses(['run', spec(good), '--workers', '3', '--quiet']);
    expect(started).toHaveLength(2);
    const bad = startRunShardProcesses(['run', spec({ ...good, samples: -1 }), '--workers', '2']);
    expect(bad).toHaveLength(1);
    try {
      // nothing is sent to them after the start: the study came with it
      for (const p of started) expect(await p.first).toEqual({ type: 'ready' } satisfies ChildMessage);
      const refused = await bad[0]!.first;
      expect(refused.type).toBe('error');
      expect(refused.type === 'error' && refused.message).toMatch(/samples: Too small/);
      for (const p of started) {
        const exit = once(p.child, 'exit');
        p.child.send({ type: 'exit' });
        expect((await exit)[0]).toBe(0);
      }
    } finally {
      for (const p of [...started, ...bad]) p.child.kill();
    }
  });
});
