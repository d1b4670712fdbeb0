import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAsync, tempDir, writeSpec } from './helpers.js';
import { alive, childrenOf, startRedis, startService, type RedisHandle } from './services.js';

describe('sandboxed shard processes', () => {
  let redis: RedisHandle;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => redis?.stop());

  it('exit when their worker is killed with SIGKILL (no orphan keeps computing)', async () => {
    const env = { REDIS_URL: redis.url };
    const dir = tempDir();
    const worker = startService('worker', env);
    await worker.waitFor(/ready/);
    const path = writeSpec(dir, { name: 'orphan', samples: 8, shardSize: 8, dataset: { kind: 'gmm', dim: 64, components: 8, n: 4000 }, solvers: [{ solver: 'heun', steps: 400 }] });
    const sub = await cliAsync(['submit', path, '--out', `${dir}/out`], { env });
    expect(sub.status, sub.stderr).toBe(0);
    await worker.waitFor(/start orphan-/);
    const kids = childrenOf(worker.proc.pid!);
    expect(kids.length).toBeGreaterThan(0);
    await worker.stop('SIGKILL');
    for (let i = 0; i < 50 && kids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    expect(kids.filter(alive)).toEqual([]);
  });
});
