import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync as cli, expectArrowFilesEqualLocalRun, tempDir, writeSpec } from './helpers.js';
import { startS3, type TestS3 } from './s3-server.js';
import { startRedis, startService, type RedisHandle } from './services.js';

describe('worker shutdown', () => {
  let redis: RedisHandle;
  let s3: TestS3;
  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
  });
  afterAll(async () => Promise.all([redis?.stop(), s3?.stop()]));

  it('SIGTERM during a shard: the worker finishes it and exits; the study completes with identical results', async () => {
    const env = { ...s3.env, REDIS_URL: redis.url };
    const dir = tempDir();
    const path = writeSpec(dir, {
      name: 'sigterm',
      samples: 12,
      shardSize: 4,
      dataset: { kind: 'gmm', dim: 32, components: 8, n: 3000 },
      solvers: [{ solver: 'heun', steps: 60 }],
    });
    const out = `s3://${s3.bucket}/sigterm`;
    const aggregator = startService('aggregator', env);
    const first = startService('worker', env);
    await Promise.all([aggregator.waitFor(/ready/), first.waitFor(/ready/)]);
    const sub = await cli(['submit', path, '--out', out], { env });
    expect(sub.status, sub.stderr).toBe(0);
    const studyId = sub.stdout.trim();
    await first.waitFor(/start sigterm-/);
    const code = await first.stop('SIGTERM');
    expect(code).toBe(0);
    // it drained: the job it had started was finished, not abandoned
    expect(first.log()).toMatch(/SIGTERM: finishing the current job/);
    expect(first.log()).toMatch(/done sigterm-[0-9a-f]{10}\.heun-polynomial-rho7-s60\.000000-000003/);
    const second = startService('worker', env);
    const watch = await cli(['watch', studyId, '--interval', '0.3'], { env });
    expect(watch.status, watch.stdout).toBe(0);
    await Promise.all([second.stop('SIGTERM'), aggregator.stop('SIGTERM')]);
    const keys = await expectArrowFilesEqualLocalRun(path, dir, studyId, out, env);
    // 3 shards x (steps, samples), states for the two shards holding sample ids < keepStates (8), summary, curves
    expect(keys.length).toBe(3 * 2 + 2 + 2);
  });
});
