import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync as cli, expectArrowFilesEqualLocalRun, tempDir, writeSpec } from './helpers.js';
import { startS3, type TestS3 } from './s3-server.js';
import { startRedis, startService, type RedisHandle } from './services.js';

describe('Redis restarted in the middle of a study', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => s3?.stop());

  it('with AOF on, the study survives the restart and its outputs equal an undisturbed run', async () => {
    const data = tempDir('redis-aof-');
    const aof = ['--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--dir', data];
    let redis: RedisHandle = await startRedis(aof);
    const port = redis.port;
    const env = { ...s3.env, REDIS_URL: redis.url };
    const dir = tempDir();
    const path = writeSpec(dir, { name: 'aof', samples: 24, shardSize: 4, dataset: { kind: 'gmm', dim: 16, components: 6, n: 2000 }, solvers: [{ solver: 'heun', steps: 400 }] });
    const out = `s3://${s3.bucket}/aof`;
    const services = [startService('worker', env), startService('worker', env), startService('aggregator', env)];
    await Promise.all(services.map((s) => s.waitFor(/ready/)));
    const sub = await cli(['submit', path, '--out', out], { env });
    expect(sub.status, sub.stderr).toBe(0);
    const studyId = sub.stdout.trim();
    await services[0]!.waitFor(/done aof-/); // at least one shard finished, others queued or running
    await redis.stop();
    const doneBefore = services.slice(0, 2).reduce((n, s) => n + (s.log().match(/done aof-/g) ?? []).length, 0);
    expect(doneBefore).toBeLessThan(6);
    await new Promise((r) => setTimeout(r, 1000));
    redis = await startRedis(aof, port); // same port, same AOF directory
    const watch = await cli(['watch', studyId, '--interval', '0.5'], { env });
    expect(watch.status, `${watch.stdout}\n${services.map((s) => s.log()).join('\n')}`).toBe(0);
    await Promise.all(services.map((s) => s.stop('SIGTERM')));
    await redis.stop();
    const keys = await expectArrowFilesEqualLocalRun(path, dir, studyId, out, env);
    expect(keys.length).toBe(6 * 2 + 2 + 2);
  });
});
