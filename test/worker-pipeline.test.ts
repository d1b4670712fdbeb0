import { QUEUES } from '@trajlab/queue';
import { Queue } from 'bullmq';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync as cli, expectArrowFilesEqualLocalRun, tempDir, writeSpec } from './helpers.js';
import { startS3, type TestS3 } from './s3-server.js';
import { alive, childrenOf, startRedis, startService, type RedisHandle } from './services.js';

/** The worker's shard processes (other children, e.g. the TypeScript loader's esbuild, do not count). */
function shardProcesses(workerPid: number): number[] {
  return childrenOf(workerPid).filter((c) => {
    try {
      return /shard-process\.[jt]s/.test(readFileSync(`/proc/${c}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
}

describe("a worker's shard process", () => {
  let redis: RedisHandle;
  let s3: TestS3;
  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
  });
  afterAll(async () => Promise.all([redis?.stop(), s3?.stop()]));

  it('holds two shards at a time; killed mid-shard, it is replaced, its shards are retried, and the outputs equal trajlab run', async () => {
    const env = { ...s3.env, REDIS_URL: redis.url };
    const dir = tempDir();
    const path = writeSpec(dir, { name: 'pipeline', samples: 12, shardSize: 4, dataset: { kind: 'gmm', dim: 64, components: 8, n: 4000 }, solvers: [{ solver: 'heun', steps: 1200 }] });
    const out = `s3://${s3.bucket}/pipeline`;
    const aggregator = startService('aggregator', env);
    const worker = startService('worker', env);
    const queue = new Queue(QUEUES.shards, { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      await Promise.all([aggregator.waitFor(/ready/), worker.waitFor(/process\(es\) started/)]);
      const [victim] = shardProcesses(worker.proc.pid!);
      expect(victim).toBeDefined();
      const sub = await cli(['submit', path, '--out', out], { env });
      expect(sub.status, sub.stderr).toBe(0);
      const studyId = sub.stdout.trim();
      // three shards queued, one worker with one shard process: it takes two (one computes, the other waits for it)
      let most = 0;
      for (let i = 0; i < 200 && most < 2; i++) {
        most = Math.max(most, await queue.getActiveCount());
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(most).toBe(2);
      await new Promise((r) => setTimeout(r, 300));
      expect(await queue.getActiveCount()).toBe(2); // and no more
      // status tells the shard sampling from the one waiting for it
      const st = await cli(['status', studyId], { env });
      expect(st.stdout).toMatch(/ 0\/3 shards, 1 running, 1 held\n/);
      expect(worker.log()).not.toMatch(/done pipeline-/); // still inside the first shard (one takes seconds)
      process.kill(victim!, 'SIGKILL');
      await worker.waitFor(new RegExp(`shard process ${victim} exited \\(SIGKILL\\); starting another`));
      expect(worker.proc.exitCode).toBe(null);
      // both shards it held failed (and are retried), naming the process
      expect(worker.log().match(new RegExp(`failed pipeline-\\S+: shard process ${victim} exited`, 'g'))).toHaveLength(2);
      const watch = await cli(['watch', studyId, '--interval', '0.5'], { env });
      expect(watch.status, watch.stdout + watch.stderr).toBe(0);
      expect(alive(victim!)).toBe(false);
      expect(shardProcesses(worker.proc.pid!)).toHaveLength(1);
      const keys = await expectArrowFilesEqualLocalRun(path, dir, studyId, out, env);
      expect(keys.length).toBeGreaterThan(4);
      // holding two, a process computes one at a time (a batch takes at most half the jobs held)
      expect(worker.log()).not.toMatch(/computed as one batch/);
    } finally {
      await queue.close();
      await Promise.all([worker.stop('SIGTERM'), aggregator.stop('SIGTERM')]);
    }
  });

  it('holding eight, a process computes waiting jobs of one config as batches of up to four, with the same files as trajlab run', async () => {
    const env = { ...s3.env, REDIS_URL: redis.url, TRAJLAB_JOBS_PER_PROCESS: '8', TRAJLAB_WARM_UP: 'off' };
    const dir = tempDir();
    // two configs of 6 shards (so that the eight jobs held mix them); the native products make rows independent of
    // their batch (shardsPerBatch)
    const path = writeSpec(dir, {
      name: 'batched',
      samples: 24,
      shardSize: 4,
      dataset: { kind: 'gmm', dim: 64, components: 8, n: 4000 },
      solvers: [
        { solver: 'heun', steps: 40 },
        { solver: 'euler', steps: 60 },
      ],
    });
    const out = `s3://${s3.bucket}/batched`;
    const aggregator = startService('aggregator', env);
    const worker = startService('worker', env);
    try {
      await Promise.all([aggregator.waitFor(/ready/), worker.waitFor(/process\(es\) started/)]);
      const sub = await cli(['submit', path, '--out', out], { env });
      expect(sub.status, sub.stderr).toBe(0);
      const studyId = sub.stdout.trim();
      const watch = await cli(['watch', studyId, '--interval', '0.5'], { env });
      expect(watch.status, watch.stdout + watch.stderr).toBe(0);
      const batches = [...worker.log().matchAll(/jobs (\S+(?:, \S+)*) computed as one batch/g)].map((m) => m[1]!.split(', '));
      expect(batches.length).toBeGreaterThan(0);
      for (const ids of batches) {
        expect(ids.length).toBeGreaterThan(1);
        expect(ids.length).toBeLessThanOrEqual(4);
        // one config per batch, shards in sample order
        const configs = new Set(ids.map((id) => id.split('.')[1]));
        expect(configs.size, ids.join(' ')).toBe(1);
        const shards = ids.map((id) => id.split('.')[2]!);
        expect(shards).toEqual([...shards].sort());
      }
      const keys = await expectArrowFilesEqualLocalRun(path, dir, studyId, out, env);
      for (const table of ['steps', 'samples']) expect(keys.filter((k) => k.endsWith(`.${table}.arrow`))).toHaveLength(2 * 6);
    } finally {
      await Promise.all([worker.stop('SIGTERM'), aggregator.stop('SIGTERM')]);
    }
  });

  it.skipIf(availableParallelism() < 2)("two workers of one host: at a study's tail the idle one lends its core to the busy one, whose files stay trajlab run's; a bad TRAJLAB_LEND_CORES is refused", async () => {
    const bad = startService('worker', { REDIS_URL: redis.url, TRAJLAB_LEND_CORES: 'maybe' });
    expect(await new Promise((r) => bad.proc.once('exit', r))).toBe(2);
    expect(bad.log()).toMatch(/TRAJLAB_LEND_CORES must be one of on, off; got 'maybe'/);

    // three shards of about a second for two workers holding one job each: one of them computes the third alone
    const env = { REDIS_URL: redis.url, TRAJLAB_JOBS_PER_PROCESS: '1', TRAJLAB_WARM_UP: 'off' };
    const dir = tempDir();
    const path = writeSpec(dir, { name: 'lending', samples: 96, shardSize: 32, dataset: { kind: 'gmm', dim: 64, components: 8, n: 4000 }, solvers: [{ solver: 'heun', steps: 600 }], keepStates: 0 });
    const out = join(dir, 'out');
    const workers = [startService('worker', env), startService('worker', env)];
    const aggregator = startService('aggregator', env);
    try {
      await Promise.all([aggregator.waitFor(/ready/), ...workers.map((w) => w.waitFor(/process\(es\) started/))]);
      const sub = await cli(['submit', path, '--out', out], { env });
      expect(sub.status, sub.stderr).toBe(0);
      const studyId = sub.stdout.trim();
      const watch = await cli(['watch', studyId, '--interval', '0.5'], { env });
      expect(watch.status, watch.stdout + watch.stderr).toBe(0);
      const lent = workers.filter((w) => /has idle cores: the shard processes computing use 2x their threads/.test(w.log()));
      expect(lent.length, workers.map((w) => w.log()).join('\n')).toBeGreaterThan(0);
      // and each took them back once its shard was done
      for (const w of lent) expect(w.log()).toMatch(/has idle cores[^]*use their own threads again/);
      await expectArrowFilesEqualLocalRun(path, dir, studyId, out, env);
    } finally {
      await Promise.all([...workers.map((w) => w.stop('SIGTERM')), aggregator.stop('SIGTERM')]);
    }
  });

  it('TRAJLAB_JOBS_PER_PROCESS=1 holds one shard at a time; a bad value is refused, naming the variable', async () => {
    const bad = startService('worker', { REDIS_URL: redis.url, TRAJLAB_JOBS_PER_PROCESS: '0' });
    expect(await new Promise((r) => bad.proc.once('exit', r))).toBe(2);
    expect(bad.log()).toMatch(/TRAJLAB_JOBS_PER_PROCESS must be an integer from 1 to 16; got '0'/);

    const env = { REDIS_URL: redis.url, TRAJLAB_JOBS_PER_PROCESS: '1', TRAJLAB_WARM_UP: 'off' };
    const dir = tempDir();
    const path = writeSpec(dir, { name: 'one-at-a-time', samples: 12, shardSize: 4, dataset: { kind: 'gmm', dim: 64, components: 8, n: 4000 }, solvers: [{ solver: 'heun', steps: 300 }] });
    const worker = startService('worker', env);
    const aggregator = startService('aggregator', env);
    const queue = new Queue(QUEUES.shards, { connection: { host: '127.0.0.1', port: redis.port } });
    try {
      await Promise.all([aggregator.waitFor(/ready/), worker.waitFor(/process\(es\) started/)]);
      const sub = await cli(['submit', path, '--out', join(dir, 'out')], { env });
      expect(sub.status, sub.stderr).toBe(0);
      let most = 0;
      while ((worker.log().match(/done one-at-a-time-/g) ?? []).length < 3) {
        most = Math.max(most, await queue.getActiveCount());
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(most).toBe(1);
      expect(worker.log()).not.toMatch(/warm/); // TRAJLAB_WARM_UP=off
      await aggregator.waitFor(/aggregated /);
      expect(aggregator.log()).not.toMatch(/warm/); // nor the aggregator's
    } finally {
      await queue.close();
      await Promise.all([worker.stop('SIGTERM'), aggregator.stop('SIGTERM')]);
    }
  });
});
