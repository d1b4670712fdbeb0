import { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TraceEvent } from '@trajlab/runner';
import { cliAsync, tempDir, writeSpec } from './helpers.js';
import { startRedis, startService, type RedisHandle, type ServiceHandle } from './services.js';

/**
 * `trajlab submit --watch --trace`: a real Redis, a real worker (two shard jobs held at a time) and the aggregator; the
 * outputs in a directory they share.
 */
describe('trajlab submit --watch --trace (real Redis, worker and aggregator)', () => {
  let redis: RedisHandle;
  let env: Record<string, string>;
  const services: ServiceHandle[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    env = { REDIS_URL: redis.url };
    services.push(startService('worker', env), startService('aggregator', env));
    await Promise.all(services.map((s) => s.waitFor(/process(\(es\))? started/)));
  });
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop('SIGKILL')));
    await redis?.stop();
  });

  // 2 configs x 6 shards of 2 samples
  const spec = { name: 'dist-trace', samples: 12, shardSize: 2, dataset: { kind: 'gmm', dim: 3, components: 3, n: 60 }, solvers: [{ solver: 'euler', steps: [4, 7] }] };

  it("writes every job's span, every computed batch once and the aggregation and report, by host and process", async () => {
    const dir = tempDir();
    const file = join(dir, 'trace.json');
    const res = await cliAsync(['submit', writeSpec(dir, spec), '--out', join(dir, 'out'), '--watch', '--trace', file], { env });
    expect(res.status, res.stderr).toBe(0);
    expect(res.stderr).toContain(`trace    ${file}`);
    const studyId = res.stdout.trim();
    const { traceEvents } = JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: TraceEvent[] };
    const names = new Map(traceEvents.filter((e) => e.ph === 'M').map((e) => [e.pid, String(e.args!.name)]));
    const spans = traceEvents.filter((e) => e.ph === 'X');
    const of = (cat: string) => spans.filter((e) => e.cat === cat);
    const end = (e: TraceEvent) => e.ts + e.dur!;
    expect([...names.values()].some((n) => /^worker shard process \d+ on \S+$/.test(n))).toBe(true);
    expect([...names.values()].filter((n) => /^aggregator \d+ on \S+$/.test(n))).toHaveLength(1);
    for (const e of spans) expect(names.has(e.pid), e.name).toBe(true);

    // 2 configs x 6 shards: each computed in exactly one batch, each job once, computed here (a fresh study)
    const shards = of('batch').flatMap((b) => (b.args!.shards as string[]).map((s) => `${b.args!.config as string}/${s}`));
    expect(shards).toHaveLength(12);
    expect(new Set(shards).size).toBe(12);
    const jobs = of('job');
    expect(new Set(jobs.map((j) => `${j.args!.config as string}/${j.args!.shard as string}`))).toEqual(new Set(shards));
    expect(jobs.map((j) => j.args!.outcome)).toEqual(Array(12).fill('computed'));
    // a process computes one batch at a time (its main thread); the jobs it holds at once each have a thread of their own
    for (const pid of new Set(spans.map((e) => e.pid))) {
      for (const tid of new Set(spans.filter((e) => e.pid === pid).map((e) => e.tid))) {
        const own = spans.filter((e) => e.pid === pid && e.tid === tid && e.cat !== 'aggregation').sort((a, b) => a.ts - b.ts);
        for (let i = 1; i < own.length; i++) expect(own[i]!.ts, `${names.get(pid)} thread ${tid}`).toBeGreaterThanOrEqual(end(own[i - 1]!));
      }
    }
    // each batch within the span of its jobs
    for (const b of of('batch')) {
      for (const s of b.args!.shards as string[]) {
        const job = jobs.find((j) => j.args!.config === b.args!.config && j.args!.shard === s)!;
        expect(b.ts).toBeGreaterThanOrEqual(job.ts);
        expect(end(b)).toBeLessThanOrEqual(end(job));
      }
    }
    // the aggregator's aggregation, then its report, once every batch is computed
    const [aggregation, report] = of('aggregation').sort((a, b) => a.ts - b.ts);
    expect([aggregation?.name, report?.name]).toEqual(['aggregation', 'report']);
    expect(names.get(aggregation!.pid)).toMatch(/^aggregator /);
    expect(aggregation!.ts).toBeGreaterThanOrEqual(Math.max(...of('batch').map(end)));
    // the study's list is gone from Redis once written
    const client = new Redis(redis.url);
    try {
      expect(await client.exists(`trajlab:trace:${studyId}`)).toBe(0);
    } finally {
      client.disconnect();
    }
  });

  it('refuses --trace without --watch, and a trace file that cannot be written, before anything is submitted', async () => {
    const dir = tempDir();
    const path = writeSpec(dir, { ...spec, name: 'dist-trace-refused' });
    const client = new Redis(redis.url);
    try {
      const before = await client.smembers('trajlab:studies');
      const noWatch = await cliAsync(['submit', path, '--out', join(dir, 'out'), '--trace', join(dir, 't.json')], { env });
      expect(noWatch.status).toBe(2);
      expect(noWatch.stderr).toMatch(/--trace needs --watch/);
      const where = join(dir, 'missing', 't.json');
      const unwritable = await cliAsync(['submit', path, '--out', join(dir, 'out'), '--watch', '--trace', where], { env });
      expect(unwritable.status).toBe(2);
      expect(unwritable.stderr).toContain(`--trace ${where}: cannot write it`);
      expect(await client.smembers('trajlab:studies')).toEqual(before);
    } finally {
      client.disconnect();
    }
  });
});
