import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync as cli, expectArrowFilesEqualLocalRun, tempDir, writeSpec } from './helpers.js';
import { startS3, type TestS3 } from './s3-server.js';
import { alive, childrenOf, startRedis, startService, type RedisHandle } from './services.js';

describe('a worker killed in the middle of a shard', () => {
  let redis: RedisHandle;
  let s3: TestS3;
  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
  });
  afterAll(async () => Promise.all([redis?.stop(), s3?.stop()]));

  it('SIGKILL: the stalled job is taken over by another worker; outputs identical to an undisturbed run', async () => {
    // short locks so the stalled-job check runs every 3 s
    const env = { ...s3.env, REDIS_URL: redis.url, TRAJLAB_LOCK_MS: '3000' };
    const dir = tempDir();
    const path = writeSpec(dir, { name: 'sigkill', samples: 8, shardSize: 4, dataset: { kind: 'gmm', dim: 32, components: 8, n: 3000 }, solvers: [{ solver: 'heun', steps: 320 }] });
    const out = `s3://${s3.bucket}/sigkill`;
    const aggregator = startService('aggregator', env);
    const victim = startService('worker', env);
    await Promise.all([aggregator.waitFor(/ready/), victim.waitFor(/ready/)]);
    const sub = await cli(['submit', path, '--out', out], { env });
    expect(sub.status, sub.stderr).toBe(0);
    const studyId = sub.stdout.trim();
    await victim.waitFor(/start sigkill-/);
    await new Promise((r) => setTimeout(r, 300)); // inside the shard (one takes a few seconds)
    const kids = childrenOf(victim.proc.pid!);
    await victim.stop('SIGKILL');
    const running = [...victim.log().matchAll(/start (sigkill-\S+)/g)].at(-1)![1]!;
    expect(victim.log()).not.toContain(`done ${running}`);
    // the killed worker's sandboxed child must not keep computing
    for (let i = 0; i < 50 && kids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    expect(kids.filter(alive)).toEqual([]);
    const rescuer = startService('worker', env);
    const watch = await cli(['watch', studyId, '--interval', '0.5'], { env });
    expect(watch.status, watch.stdout).toBe(0);
    await Promise.all([rescuer.stop('SIGTERM'), aggregator.stop('SIGTERM')]);
    const keys = await expectArrowFilesEqualLocalRun(path, dir, studyId, out, env);
    expect(keys.length).toBeGreaterThan(4);
  });
});
