import { openStore } from '@trajlab/storage';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync as cli, expectArrowFilesEqualLocalRun, tempDir, writeSpec } from './helpers.js';
import { startRecordingProxy, startS3, type TestS3 } from './s3-server.js';
import { startRedis, startService, type RedisHandle, type ServiceHandle } from './services.js';

/**
 * What the distributed pipeline asks of S3, counted at an HTTP proxy in front of the real S3 server: a fresh study's
 * shards are not looked for before they are computed, and the aggregator reads each shard object once (the report
 * finds the samples the aggregation read, and the summary and curves it wrote, in memory).
 */
describe('requests to S3 of a distributed study', () => {
  let redis: RedisHandle;
  let s3: TestS3;
  let proxy: { endpoint: string; stop(): Promise<void> } | null = null;
  let env: Record<string, string>;
  const services: ServiceHandle[] = [];
  /** Requests as 'METHOD path' (query string left out), in order. */
  const requests: string[] = [];
  const count = (method: string, pattern: RegExp) => requests.filter((r) => r.startsWith(`${method} `) && pattern.test(r));

  beforeAll(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    proxy = await startRecordingProxy(s3.endpoint, (method, url) => requests.push(`${method} ${decodeURIComponent(url.split('?')[0]!)}`));
    env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint, REDIS_URL: redis.url };
    // the aggregator folds at the usual priority: the last test asserts it folded while the study ran, which a process at
    // the lowest one (the default) may not get to do on a test machine busy with other tests
    services.push(startService('worker', env), startService('aggregator', { ...env, TRAJLAB_EARLY_FOLD: 'normal' }));
    await Promise.all(services.map((s) => s.waitFor(/process(\(es\))? started/)));
  });
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop('SIGKILL')));
    await proxy?.stop();
    await Promise.all([redis?.stop(), s3?.stop()]);
  });

  const spec = (name: string) => ({
    name,
    samples: 12,
    shardSize: 4,
    dataset: { kind: 'gmm', dim: 3, components: 3, n: 60 },
    solvers: [
      { solver: 'euler', steps: 4 },
      { solver: 'heun', steps: 3 },
    ],
    reference: { solver: 'heun', steps: 6 },
    keepStates: 0,
  });
  const shardFile = /\/shards\/.*\.(samples|steps)\.arrow$/;

  it('a fresh study: no shard is looked for before it is computed, each shard file is read once, outputs equal a local run', async () => {
    const dir = tempDir();
    const specPath = writeSpec(dir, spec('fresh-reqs'));
    const out = `s3://${s3.bucket}/fresh`;
    requests.length = 0;
    const res = await cli(['submit', specPath, '--out', out, '--watch'], { env: { ...process.env, ...env } });
    expect(res.status, res.stderr).toBe(0);
    const studyId = /fresh-reqs-[0-9a-f]{10}/.exec(res.stdout)![0];
    // the shards' own manifests are never asked for, but the reference config's (heun, 6 steps): a shard computes its
    // reference when missing, so another job may have written it
    expect(count('HEAD', /manifest\.json$/).filter((r) => !r.includes('-s6/'))).toEqual([]);
    // 3 configs x 3 shards x (samples, steps), each written once: no shard computed twice
    expect(count('PUT', shardFile)).toHaveLength(18);
    expect(new Set(count('PUT', shardFile)).size).toBe(18);
    // the aggregation reads each of them once (the reference config's are also read by the shards comparing against it)
    const aggregationGets = count('GET', shardFile).filter((r) => !r.includes('-s6/'));
    expect(aggregationGets).toHaveLength(12);
    expect(new Set(aggregationGets).size).toBe(12);
    // summary and curves: written by the aggregation and read by the report from memory
    expect(count('GET', /\/summary\//)).toEqual([]);
    // a shard checks its reference's files by reading them (no HEAD first) and takes the finals from the samples file it
    // checked; the shard process keeps the finals it checked or wrote, so each reference samples file is read by the
    // aggregation and at most once by the worker's one shard process, not by each of the two shards comparing against it
    expect(count('HEAD', shardFile)).toEqual([]);
    const referenceSamples = count('GET', /-s6\/.*\.samples\.arrow$/);
    expect(new Set(referenceSamples).size).toBe(3);
    for (const file of new Set(referenceSamples)) expect(referenceSamples.filter((r) => r === file).length, file).toBeLessThanOrEqual(2);
    expect(await expectArrowFilesEqualLocalRun(specPath, dir, studyId, out, env)).toContain(`${studyId}/summary/summary.arrow`);
  });

  it('a study whose outputs are already there: every shard is found complete and none is written again', async () => {
    const dir = tempDir();
    const specPath = writeSpec(dir, spec('again-reqs'));
    const local = await cli(['run', specPath, '--out', join(dir, 'local'), '--quiet']);
    expect(local.status, local.stderr).toBe(0);
    const studyId = readdirSync(join(dir, 'local'))[0]!;
    // the local run's outputs copied to S3, as if an earlier run had written them there
    const out = `s3://${s3.bucket}/again`;
    const store = openStore(out, { ...process.env, ...env });
    const walk = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)]));
    for (const f of walk(join(dir, 'local', studyId))) await store.put(relative(join(dir, 'local'), f), readFileSync(f));
    requests.length = 0;
    const res = await cli(['submit', specPath, '--out', out, '--watch'], { env: { ...process.env, ...env } });
    expect(res.status, res.stderr).toBe(0);
    expect(count('HEAD', /manifest\.json$/).length).toBeGreaterThanOrEqual(9);
    expect(count('PUT', shardFile)).toEqual([]);
    expect(await expectArrowFilesEqualLocalRun(specPath, dir, studyId, out, env)).toHaveLength(3 * 3 * 2 + 2);
  });

  it('shards that finish before the study ends are folded into its aggregation meanwhile, with the same outputs', async () => {
    const dir = tempDir();
    // six shards of 300 Heun steps, one worker: the first ones finish well before the last
    const specPath = writeSpec(dir, { ...spec('early-reqs'), samples: 24, solvers: [{ solver: 'heun', steps: 300 }], reference: undefined });
    const out = `s3://${s3.bucket}/early`;
    requests.length = 0;
    const res = await cli(['submit', specPath, '--out', out, '--watch'], { env: { ...process.env, ...env } });
    expect(res.status, res.stderr).toBe(0);
    const studyId = /early-reqs-[0-9a-f]{10}/.exec(res.stdout)![0];
    const folded = new RegExp(`aggregated ${studyId}\\.aggregate \\((\\d+) shard file\\(s\\) folded while the study ran\\)`).exec(services[1]!.log());
    expect(folded, services[1]!.log()).not.toBeNull();
    expect(Number(folded![1])).toBeGreaterThanOrEqual(2);
    // the first shard's files were read before the last shard's were written
    const lastPut = requests.findLastIndex((r) => r.startsWith('PUT ') && shardFile.test(r));
    expect(requests.findIndex((r) => r.startsWith('GET ') && shardFile.test(r))).toBeLessThan(lastPut);
    // still each shard file read once, and the outputs are those of a local run
    const gets = count('GET', shardFile);
    expect(gets).toHaveLength(12);
    expect(new Set(gets).size).toBe(12);
    expect(await expectArrowFilesEqualLocalRun(specPath, dir, studyId, out, env)).toHaveLength(12 + 2);
  });

  it('an aggregator with a bad TRAJLAB_EARLY_FOLD exits at once with status 2, naming it', async () => {
    const bad = startService('aggregator', { ...env, TRAJLAB_EARLY_FOLD: 'sometimes' });
    const code = await new Promise<number | null>((resolve) => (bad.proc.exitCode !== null ? resolve(bad.proc.exitCode) : bad.proc.once('exit', resolve)));
    expect(code).toBe(2);
    expect(bad.log()).toMatch(/TRAJLAB_EARLY_FOLD must be one of background, normal, off; got 'sometimes'/);
  });
});
