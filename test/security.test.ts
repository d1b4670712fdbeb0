import { openStore } from '@trajlab/storage';
import { Queue, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync as cli, tempDir, writeSpec } from './helpers.js';
import { startS3, S3_TEST_CREDENTIALS, type TestS3 } from './s3-server.js';
import { startRedis, startService, type RedisHandle, type ServiceHandle } from './services.js';

const REDIS_PASSWORD = 'r3dis-pa55word-7f3a';

describe('payloads and credentials (real Redis with a password, real S3 server, real services)', () => {
  let redis: RedisHandle;
  let s3: TestS3;
  let env: Record<string, string>;
  const services: ServiceHandle[] = [];
  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(['--save', '', '--appendonly', 'no', '--requirepass', REDIS_PASSWORD]), startS3()]);
    env = { ...s3.env, REDIS_URL: `redis://default:${REDIS_PASSWORD}@127.0.0.1:${redis.port}` };
    services.push(startService('worker', env), startService('aggregator', env));
    await Promise.all(services.map((s) => s.waitFor(/ready/)));
  });
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop('SIGKILL')));
    await Promise.all([redis?.stop(), s3?.stop()]);
  });

  it('jobs pushed straight into the queue with bad payloads fail at once (no retries), each naming the job and the problem', async () => {
    const connection = { host: '127.0.0.1', port: redis.port, password: REDIS_PASSWORD };
    const queue = new Queue('trajlab-shards', { connection });
    const events = new QueueEvents('trajlab-shards', { connection });
    await events.waitUntilReady();
    const spec = { name: 'rogue', samples: 2, dataset: { kind: 'gaussian', dim: 2, n: 20 }, solvers: [{ solver: 'euler', steps: 2 }] };
    const shard = { index: 0, first: 0, count: 2, name: '000000-000001' };
    const valid = { studyId: 'rogue-0123456789', out: tempDir(), spec, baseDir: '/', configId: 'euler-polynomial-rho7-s2', shard };
    const payloads: [string, unknown, RegExp][] = [
      ['rogue-1', { studyId: 'Not An Id', out: 'ftp://x', configId: 'a', shard: { index: 0 } }, /job rogue-1: invalid payload \(.*studyId: must be <name>-<10 hex>.*out: must be a local path or s3:\/\/bucket\/prefix/],
      ['rogue-2', { ...valid, extra: 'field' }, /job rogue-2: invalid payload \(.*extra/],
      ['rogue-3', { ...valid, shard: { ...shard, count: -1 } }, /job rogue-3: invalid payload \(.*shard\.count/],
      ['rogue-4', { ...valid, spec: { ...spec, samples: 0 } }, /job rogue-4: .*samples/],
      ['rogue-5', { ...valid, spec: { ...spec, dataset: { kind: 'idx', uri: 'file:///etc/shadow' } } }, /job rogue-5: .*dataset\.uri: unsupported URI scheme 'file:\/\/'/],
      ['rogue-6', valid, /job rogue-6: the spec resolves to study rogue-[0-9a-f]{10}, not rogue-0123456789/],
    ];
    for (const [jobId, data, message] of payloads) {
      const job = await queue.add('shard', data as never, { jobId, attempts: 3 });
      await expect(job.waitUntilFinished(events, 60_000), jobId).rejects.toThrow(message);
      const failed = await queue.getJob(jobId);
      expect(failed!.attemptsMade, jobId).toBe(1); // not retried: retrying cannot fix a bad payload
    }
    await Promise.all([queue.close(), events.close()]);
  });

  it('credentials (Redis password, S3 secret key) appear in no output object, no log and no CLI output', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, { name: 'secrets', samples: 4, shardSize: 2, dataset: { kind: 'rings', n: 40 }, solvers: [{ solver: 'euler', steps: 3 }], keepStates: 1 });
    const out = `s3://${s3.bucket}/secrets`;
    const res = await cli(['submit', path, '--out', out, '--watch'], { env });
    expect(res.status, res.stderr).toBe(0);
    const status = await cli(['status'], { env });
    const store = openStore(out, { ...process.env, ...env });
    const keys = await store.list('');
    expect(keys.some((k) => k.endsWith('summary/report.html'))).toBe(true);
    const secrets = [REDIS_PASSWORD, S3_TEST_CREDENTIALS.secretAccessKey];
    const texts = [res.stdout, res.stderr, status.stdout, status.stderr, ...services.map((s) => s.log())];
    for (const key of keys) texts.push(Buffer.from(await store.get(key)).toString('latin1'));
    for (const text of texts) for (const secret of secrets) expect(text.includes(secret)).toBe(false);
    // the password-protected URL is shown redacted where it is shown at all
    expect(services[0]!.log()).toMatch(/redis:\/\/default:\*\*\*@127\.0\.0\.1/);
  });
});
