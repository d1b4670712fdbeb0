import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisHandle } from '../../../test/services.js';
import { hostKeys, hostShare, HostCores, parseRecord, type WorkerCores } from './host-cores.js';

describe('hostShare: the share of cores each computing process of a host may use', () => {
  const long = 0; // records that changed long ago
  const now = 10_000;
  const w = (processes: number, computing: number, since = long): WorkerCores => ({ processes, computing, since });

  it('1 when nothing computes, or nothing has been idle for the grace period', () => {
    expect(hostShare([], now)).toBe(1);
    expect(hostShare([w(1, 0), w(1, 0)], now)).toBe(1);
    expect(hostShare([w(1, 1), w(1, 0, now - 50)], now, 200)).toBe(1);
    expect(hostShare([w(1, 1), w(1, 1)], now)).toBe(1);
  });

  it('the processes computing or idle for the grace period, over those computing, rounded down', () => {
    expect(hostShare([w(1, 1), w(1, 0)], now)).toBe(2);
    expect(hostShare([w(1, 1), w(1, 0, now - 200)], now, 200)).toBe(2);
    expect(hostShare([w(2, 2), w(2, 0)], now)).toBe(2);
    expect(hostShare([w(2, 1), w(1, 0)], now)).toBe(3);
    expect(hostShare([w(3, 3), w(1, 0)], now)).toBe(1);
    expect(hostShare([w(4, 1), w(4, 0)], now)).toBe(8);
  });
});

describe("a worker's record", () => {
  it('is read back as written, and anything else is skipped', () => {
    expect(parseRecord(JSON.stringify({ processes: 2, computing: 1, since: 5 }))).toEqual({ processes: 2, computing: 1, since: 5 });
    for (const bad of ['', 'null', '{"processes": 1e9, "computing": 0, "since": 1}', '{"processes": 1, "computing": 2, "since": 1}', '{"processes": -1, "computing": 0, "since": 1}', '{"processes": 1, "computing": 0}', '[1, 0, 1]']) {
      expect(parseRecord(bad), bad).toBe(null);
    }
  });
});

describe('HostCores (real Redis)', () => {
  let redis: RedisHandle;
  const clients: Redis[] = [];
  const client = () => {
    const c = new Redis(redis.port, '127.0.0.1');
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await redis?.stop();
  });

  const until = async (what: () => boolean, ms = 5000) => {
    for (const t0 = Date.now(); !what(); ) {
      if (Date.now() - t0 > ms) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const opts = { pollMs: 20, graceMs: 50, ttlMs: 600, maxShare: 64 };

  it('lends the cores of idle workers of its host to a busy one, takes them back when they get work, and ignores other hosts and workers gone', async () => {
    const shares: number[] = [];
    const busy = new HostCores(client(), 'h1', 'busy', 1, (s) => shares.push(s), opts);
    const idle = new HostCores(client(), 'h1', 'idle', 1, () => {}, opts);
    const elsewhere = new HostCores(client(), 'h2', 'elsewhere', 4, () => {}, opts);
    await new Promise((r) => setTimeout(r, 80)); // longer than the grace period
    busy.setComputing(1);
    await until(() => shares.length === 1);
    expect(shares).toEqual([2]); // not 6: the other host's idle processes are not this host's
    idle.setComputing(1);
    await until(() => shares.length === 2);
    expect(shares).toEqual([2, 1]);
    // a worker that stops removes its record; its core is not lent
    idle.setComputing(0);
    await idle.close();
    expect(await clients[1]!.exists(hostKeys.worker('h1', 'idle'))).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(shares).toEqual([2, 1]);

    // one that dies leaves a record that expires (ttlMs) and is then dropped from the host's set
    const doomedClient = client();
    const doomed = new HostCores(doomedClient, 'h1', 'doomed', 1, () => {}, opts);
    await until(() => shares.length === 3);
    expect(shares).toEqual([2, 1, 2]);
    doomedClient.disconnect(); // no more refreshes, as if the process were gone
    await until(() => shares.length === 4, 3000);
    expect(shares).toEqual([2, 1, 2, 1]);
    expect(await clients[0]!.smembers(hostKeys.workers('h1'))).toEqual(['busy']);

    // nothing computing any more: back to its own threads, at once
    busy.setComputing(0);
    await Promise.all([busy.close(), elsewhere.close(), doomed.close(10)]);
  });

  it('lends no more than maxShare (the host\'s cores)', async () => {
    const shares: number[] = [];
    const busy = new HostCores(client(), 'h3', 'busy', 1, (s) => shares.push(s), { ...opts, maxShare: 2 });
    const idle = new HostCores(client(), 'h3', 'idle', 7, () => {}, opts);
    await new Promise((r) => setTimeout(r, 80));
    busy.setComputing(1);
    await until(() => shares.length === 1);
    await new Promise((r) => setTimeout(r, 60));
    expect(shares).toEqual([2]); // not 8
    busy.setComputing(0);
    expect(shares).toEqual([2, 1]);
    await Promise.all([busy.close(), idle.close()]);
  });
});
