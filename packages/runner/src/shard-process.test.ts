import { planStudy, resolveStudyFile } from '@trajlab/study';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BatchGivenBack, ShardProcesses, type ShardWork } from './pool.js';

const dir = mkdtempSync(join(tmpdir(), 'trajlab-shard-process-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a shard process handed batches before it is ready (real child process)', () => {
  it('computes the first once ready, gives back one asked back before it began (writing nothing of it), and takes `share` out of turn', async () => {
    const path = join(dir, 'spec.json');
    writeFileSync(path, JSON.stringify({ name: 'early-batches', samples: 6, shardSize: 2, dataset: { kind: 'two-moons', n: 50 }, solvers: [{ solver: 'euler', steps: 3 }] }));
    const { study } = resolveStudyFile(path);
    const config = planStudy(study).configs[0]!;
    const [first, second, third] = config.shards.map((shard): ShardWork[] => [{ config, shard }]);
    const out = join(dir, 'out');
    const shardFiles = (w: ShardWork[]) => join(out, study.studyId, 'shards', config.configId, `${w[0]!.shard.name}.samples.arrow`);

    const processes = new ShardProcesses(1, path, out);
    const exec = processes.executors[0]!;
    try {
      // all sent while the process still loads: they wait in its channel, in order
      const a = exec.run(first!, () => {});
      const b = exec.run(second!, () => {});
      exec.giveBack(second!);
      exec.shareCores!(2);
      await expect(b).rejects.toBeInstanceOf(BatchGivenBack);
      expect(await a).toEqual([false]);
      await exec.ready;
      expect(existsSync(shardFiles(first!))).toBe(true);
      expect(existsSync(shardFiles(second!))).toBe(false);
      // a batch it has begun is not given back: it is finished as usual
      const c = exec.run(third!, () => {});
      await new Promise((r) => setTimeout(r, 50));
      exec.giveBack(third!);
      expect(await exec.run(second!, () => {})).toEqual([false]);
      expect(await c).toEqual([false]);
      expect(existsSync(shardFiles(second!)) && existsSync(shardFiles(third!))).toBe(true);
    } finally {
      processes.close();
    }
  });

  it('fails the batches handed to it with its start-up error (a spec it refuses) and writes nothing', async () => {
    const good = join(dir, 'good.json');
    const body = { name: 'refused-later', samples: 4, shardSize: 2, dataset: { kind: 'two-moons', n: 50 }, solvers: [{ solver: 'euler', steps: 3 }] };
    writeFileSync(good, JSON.stringify(body));
    const { study } = resolveStudyFile(good);
    const config = planStudy(study).configs[0]!;
    // the process reads the spec after this process planned it: now it is refused
    const path = join(dir, 'refused.json');
    writeFileSync(path, JSON.stringify({ ...body, samples: -1 }));
    const out = join(dir, 'refused-out');
    const processes = new ShardProcesses(1, path, out);
    try {
      await expect(processes.executors[0]!.run([{ config, shard: config.shards[0]! }], () => {})).rejects.toThrow(/samples: Too small/);
      await expect(processes.executors[0]!.ready).rejects.toThrow(/samples: Too small/);
      // and so does any batch handed to it later
      await expect(processes.executors[0]!.run([{ config, shard: config.shards[1]! }], () => {})).rejects.toThrow(/samples: Too small/);
      expect(existsSync(out)).toBe(false);
    } finally {
      processes.close();
    }
  });
});
