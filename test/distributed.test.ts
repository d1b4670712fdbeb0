import { openStore } from '@trajlab/storage';
import { Queue } from 'bullmq';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync as cli, expectArrowFilesEqualLocalRun, readTable, rows, tempDir, writeSpec } from './helpers.js';
import { startS3, type TestS3 } from './s3-server.js';
import { childrenOf, startRedis, startService, type RedisHandle, type ServiceHandle } from './services.js';

describe('distributed studies: BullMQ flow, 2 sandboxed workers, aggregator, S3 over HTTP', () => {
  let redis: RedisHandle;
  let s3: TestS3;
  let env: Record<string, string>;
  const services: ServiceHandle[] = [];

  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    env = { ...s3.env, REDIS_URL: redis.url };
    services.push(startService('worker', env), startService('worker', env), startService('aggregator', env));
    await Promise.all(services.map((s) => s.waitFor(/ready/)));
  });
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop('SIGKILL')));
    await Promise.all([redis?.stop(), s3?.stop()]);
  });

  const spec = {
    name: 'dist-e2e',
    samples: 16,
    shardSize: 4,
    dataset: { kind: 'gmm', dim: 3, components: 4, n: 150 },
    compare: { kind: 'gmm' },
    solvers: [
      { solver: 'heun', steps: 5 },
      { solver: 'ipndm', schedule: 'gits', steps: 4, gits: { teacherSteps: 12, warmup: 16 } },
    ],
    reference: { solver: 'heun', steps: 16 },
    keepStates: 2,
  };

  it('workers and the aggregator start their child process before any job, and reuse it for every job', async () => {
    await Promise.all(services.map((s) => s.waitFor(/process(\(es\))? started/)));
    // idle, each worker's shard process warms up (runner's warmUp); every study below runs after it, so the
    // byte-identical comparisons also show that it changes no result
    await Promise.all(services.slice(0, 2).map((s) => s.waitFor(/shard process \d+ warmed up in \d+\.\d\d s/)));
    // and the aggregator's sandboxed process folds, aggregates and reports a made-up study (warmUpAggregation)
    await services[2]!.waitFor(/\[aggregation \d+\] warmed up in \d+\.\d\d s \(48 shard files folded\)/);
    // their child processes: the shard process (worker), BullMQ's sandboxed one (aggregator); other children, e.g. the
    // TypeScript loader's esbuild on a cold cache, do not count
    const sandboxes = (pid: number) => childrenOf(pid).filter((c) => {
      try {
        return /bullmq.*main\.js|shard-process\.[jt]s/.test(readFileSync(`/proc/${c}/cmdline`, 'utf8'));
      } catch {
        return false;
      }
    });
    const before = services.map((s) => sandboxes(s.proc.pid!));
    for (const c of before) expect(c).toHaveLength(1);
    const dir = tempDir();
    const res = await cli(['submit', writeSpec(dir, { ...spec, name: 'dist-warm', reference: undefined, keepStates: 0 }), '--out', `s3://${s3.bucket}/warm`, '--watch'], { env: { ...process.env, ...env } });
    expect(res.status, res.stderr).toBe(0);
    // the jobs ran in the processes started ahead of them: no process was forked for them
    expect(services.map((s) => sandboxes(s.proc.pid!))).toEqual(before);
    expect(services[0]!.log() + services[1]!.log()).toMatch(/done dist-warm-/);
  });

  it('submit --watch completes with outputs byte-identical to trajlab run; every shard object exists once', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, spec);
    const out = `s3://${s3.bucket}/e2e`;
    const res = await cli(['submit', path, '--out', out, '--watch'], { env });
    expect(res.status, res.stderr).toBe(0);
    const studyId = res.stdout.trim().split('\n')[0]!;
    expect(res.stderr).toMatch(new RegExp(`${studyId}: complete`));
    const arrowKeys = await expectArrowFilesEqualLocalRun(path, dir, studyId, out, env);
    // 3 configs x 4 shards x (steps, samples) + states for the first shard of each + summary + curves
    expect(arrowKeys).toHaveLength(3 * 4 * 2 + 3 + 2);
    const store = openStore(out, { ...process.env, ...env });
    const keys = await store.list(`${studyId}/`);
    expect(new Set(keys).size).toBe(keys.length);
    const doc = JSON.parse(new TextDecoder().decode(await store.get(`${studyId}/study.json`)));
    expect(doc.status).toBe('complete');
    expect(rows(readTable(join(dir, 'local', studyId, 'summary/summary.arrow'))).map((r) => r.config_id)).toHaveLength(3);

    // Resubmitting the same spec adds no job and writes no object.
    const queue = new Queue('trajlab-shards', { connection: { host: '127.0.0.1', port: redis.port } });
    const before = await queue.getJobCounts('completed', 'waiting', 'active', 'failed', 'prioritized');
    const again = await cli(['submit', path, '--out', out], { env });
    expect(again.status).toBe(0);
    expect(again.stderr).toMatch(/already submitted \(completed\); nothing added/);
    expect(await queue.getJobCounts('completed', 'waiting', 'active', 'failed', 'prioritized')).toEqual(before);
    expect(await store.list(`${studyId}/`)).toEqual(keys);
    await queue.close();
  });

  it('a study whose denoiser is a model on S3 (trained by trajlab train) runs on the workers with outputs identical to trajlab run', async () => {
    const dir = tempDir();
    const data = { kind: 'gmm', dim: 2, components: 4, n: 200, seed: 5 };
    const train = writeSpec(dir, { name: 'dist-model', dataset: data, model: { arch: 'mlp', width: 32, depth: 2, embed: 8 }, steps: 40, batchSize: 32, checkpointEvery: 0 }, 'train.yaml');
    const model = `s3://${s3.bucket}/models/dist-model`;
    const trained = await cli(['train', train, '--out', model, '--quiet'], { env });
    expect(trained.status, trained.stderr).toBe(0);
    const path = writeSpec(dir, { name: 'dist-learned', samples: 8, shardSize: 4, dataset: data, denoiser: { kind: 'tfjs', uri: model }, compare: { kind: 'optimal' }, solvers: [{ solver: 'heun', steps: 4 }] });
    const out = `s3://${s3.bucket}/learned`;
    const res = await cli(['submit', path, '--out', out, '--watch'], { env: { ...env, TRAJLAB_DATA_CACHE: join(dir, 'cache') } });
    expect(res.status, res.stderr).toBe(0);
    const studyId = res.stdout.trim().split('\n')[0]!;
    const keys = await expectArrowFilesEqualLocalRun(path, dir, studyId, out, { ...env, TRAJLAB_DATA_CACHE: join(dir, 'cache-local') });
    expect(keys).toHaveLength(2 * 3 + 2); // 2 shards x (steps, samples, states) + summary + curves
    const doc = JSON.parse(new TextDecoder().decode(await openStore(out, { ...process.env, ...env }).get(`${studyId}/study.json`)));
    expect(doc.models.denoiser.uri).toBe(model);
  });

  it('a shard that fails for good (its dataset file disappeared) fails the study within seconds, with that error; retry completes it', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'data'));
    const data = join(dir, 'data', 'tiny-idx3-ubyte');
    // 20 images of 2x2 bytes
    const header = Buffer.from([0, 0, 8, 3, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0, 0, 2]);
    const body = Buffer.from(Array.from({ length: 80 }, (_, i) => (i * 37) % 256));
    writeFileSync(data, Buffer.concat([header, body]));
    const path = writeSpec(dir, { name: 'dist-fail', samples: 8, shardSize: 4, dataset: { kind: 'idx', uri: './data/tiny-idx3-ubyte' }, solvers: [{ solver: 'euler', steps: 3 }] });
    copyFileSync(data, `${data}.bak`);
    // Submit with the file present (validation reads it), with the queue paused so no worker starts, then remove the file.
    const queue = new Queue('trajlab-shards', { connection: { host: '127.0.0.1', port: redis.port } });
    await queue.pause();
    const out = `s3://${s3.bucket}/fail`;
    const sub = await cli(['submit', path, '--out', out], { env });
    expect(sub.status, sub.stderr).toBe(0);
    const studyId = sub.stdout.trim();
    rmSync(data);
    await queue.resume();
    await queue.close();
    const t0 = Date.now();
    const watch = await cli(['watch', studyId, '--interval', '0.2'], { env });
    expect(watch.status).toBe(1);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(watch.stdout).toMatch(new RegExp(`${studyId}: failed`));
    expect(watch.stdout).toMatch(/failure: dist-fail-[0-9a-f]{10}\.euler-polynomial-rho7-s3\.0000\d\d-0000\d\d: .*tiny-idx3-ubyte: file not found/);
    copyFileSync(`${data}.bak`, data);
    const retry = await cli(['retry', studyId], { env });
    expect(retry.status, retry.stderr).toBe(0);
    const done = await cli(['watch', studyId, '--interval', '0.2'], { env });
    expect(done.status, done.stdout).toBe(0);
    expect(done.stdout).toMatch(new RegExp(`${studyId}: complete`));
    rmSync(`${data}.bak`);
  });

  it('cancel stops a running study', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, {
      name: 'dist-cancel',
      samples: 64,
      shardSize: 8,
      dataset: { kind: 'gmm', dim: 64, components: 8, n: 4000 },
      solvers: [{ solver: 'heun', steps: 1000 }],
      metrics: { pca: false },
    });
    const sub = await cli(['submit', path, '--out', `s3://${s3.bucket}/cancel`], { env });
    expect(sub.status, sub.stderr).toBe(0);
    const studyId = sub.stdout.trim();
    // wait until it runs
    for (let i = 0; i < 100; i++) {
      const st = await cli(['status', studyId], { env });
      if (/running/.test(st.stdout)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const t0 = Date.now();
    const c = await cli(['cancel', studyId], { env });
    expect(c.status, c.stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const st = await cli(['status', studyId], { env });
    expect(st.stdout).toMatch(new RegExp(`${studyId}: cancelled`));
    expect(st.stdout).not.toMatch(/running/);
    // the workers are free again: they log the cancellation, not a crash
    await services[0]!.waitFor(/was cancelled|ready/);
  });
});

describe('a misconfigured worker', () => {
  it('loads its backend ahead of work but reports a bad TRAJLAB_BACKEND on the job, naming it, and keeps running', async () => {
    const [redis, s3] = await Promise.all([startRedis(), startS3()]);
    const env = { ...s3.env, REDIS_URL: redis.url };
    const worker = startService('worker', { ...env, TRAJLAB_BACKEND: 'cuda' });
    try {
      await worker.waitFor(/process\(es\) started/);
      const dir = tempDir();
      const path = writeSpec(dir, { name: 'dist-bad-backend', samples: 4, shardSize: 4, dataset: { kind: 'gmm', dim: 2, components: 2, n: 50 }, solvers: [{ solver: 'euler', steps: 3 }] });
      const sub = await cli(['submit', path, '--out', `s3://${s3.bucket}/bad-backend`], { env });
      expect(sub.status, sub.stderr).toBe(0);
      await worker.waitFor(/failed dist-bad-backend-[0-9a-f]{10}\.euler-polynomial-rho7-s3\.000000-000003: TRAJLAB_BACKEND must be one of auto, tensorflow, wasm, cpu; got 'cuda'/);
      expect(worker.proc.exitCode).toBe(null);
      expect(childrenOf(worker.proc.pid!).length).toBeGreaterThan(0);
      expect(worker.log()).not.toMatch(/warm/); // no backend, no warm-up
    } finally {
      await worker.stop('SIGKILL');
      await Promise.all([redis.stop(), s3.stop()]);
    }
  });
});

describe('services run from the TypeScript sources (TRAJLAB_COMPILED=off, as in an edited checkout)', () => {
  it('their child processes load the sources too, ahead of work, and a submitted study completes', async () => {
    const [redis, s3] = await Promise.all([startRedis(), startS3()]);
    const env = { ...s3.env, REDIS_URL: redis.url, TRAJLAB_COMPILED: 'off' };
    const services = [startService('worker', env), startService('aggregator', env)];
    try {
      await Promise.all(services.map((s) => s.waitFor(/process(\(es\))? started/, 120_000)));
      const dir = tempDir();
      const path = writeSpec(dir, { name: 'dist-sources', samples: 4, shardSize: 2, dataset: { kind: 'gmm', dim: 2, components: 2, n: 40 }, solvers: [{ solver: 'euler', steps: 3 }] });
      const res = await cli(['submit', path, '--out', `s3://${s3.bucket}/sources`, '--watch'], { env });
      expect(res.status, res.stderr).toBe(0);
      expect(res.stderr).toMatch(/dist-sources-[0-9a-f]+: complete/);
      expect(services[0]!.log()).not.toMatch(/Unknown file extension/);
    } finally {
      await Promise.all(services.map((s) => s.stop('SIGKILL')));
      await Promise.all([redis.stop(), s3.stop()]);
    }
  });
});
