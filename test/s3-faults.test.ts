import { runStudyEmbedded, type ShardManifest } from '@trajlab/runner';
import { openStore, S3Store } from '@trajlab/storage';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, writeSpec } from './helpers.js';
import { forwardWhole, startS3, S3_TEST_CREDENTIALS, type TestS3 } from './s3-server.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * An HTTP proxy in front of the S3 server that misbehaves on a fixed cycle: 503 SlowDown bursts (request not
 * forwarded), slow responses, and connections dropped after the server has processed the request (the client never
 * learns the outcome). Requests are buffered whole before forwarding, as a load balancer would.
 */
function faultyProxy(target: string): Promise<{ url: string; server: Server; counts: { requests: number; unavailable: number; slow: number; dropped: number } }> {
  const counts = { requests: 0, unavailable: 0, slow: 0, dropped: 0 };
  let n = 0;
  const server = createServer((req, res) => {
    const k = n++ % 7;
    if (k === 1 || k === 2) {
      // the request is read whole, then refused without being forwarded
      req.resume();
      req.on('end', () => {
        counts.requests++;
        counts.unavailable++;
        res.writeHead(503, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>');
      });
      return;
    }
    forwardWhole(
      new URL(target),
      req,
      (status, headers, body) => {
        counts.requests++;
        if (k === 4) {
          counts.dropped++;
          req.socket.destroy(); // processed upstream, but the client sees a dropped connection
          return;
        }
        const send = () => {
          res.writeHead(status, headers);
          res.end(body);
        };
        if (k === 5) {
          counts.slow++;
          setTimeout(send, 300);
        } else send();
      },
      () => res.destroy(),
    );
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, counts })));
}

describe('S3 through a faulty network (real S3 server behind a fault-injecting proxy)', () => {
  let s3: TestS3;
  let proxy: Awaited<ReturnType<typeof faultyProxy>>;
  beforeAll(async () => {
    s3 = await startS3();
    proxy = await faultyProxy(s3.endpoint);
  });
  afterAll(async () => {
    proxy?.server.close();
    await s3?.stop();
  });

  // trajlab's own requests (the default with a custom endpoint) and the SDK's (what AWS's own endpoints get)
  it.each(['builtin', 'sdk'] as const)('retries until objects round-trip byte for byte, multipart included (%s requests)', async (client) => {
    const before = { ...proxy.counts };
    const store = new S3Store({ bucket: s3.bucket, prefix: `faults-${client}`, endpoint: proxy.url, credentials: S3_TEST_CREDENTIALS, multipartThreshold: 6 * 2 ** 20, partSize: 5 * 2 ** 20, maxAttempts: 8, client });
    const bodies = [randomBytes(1000), randomBytes(300_000), randomBytes(11 * 2 ** 20)];
    for (const [i, b] of bodies.entries()) await store.put(`obj-${i}`, b);
    for (const [i, b] of bodies.entries()) expect(sha(await store.get(`obj-${i}`))).toBe(sha(b));
    expect(await store.exists('obj-0')).toBe(true);
    expect(await store.exists('obj-none')).toBe(false);
    expect(proxy.counts.unavailable).toBeGreaterThan(before.unavailable);
    expect(proxy.counts.dropped).toBeGreaterThan(before.dropped);
    expect(proxy.counts.slow).toBeGreaterThan(before.slow);
  });

  it('a whole study written through it: every object under a final key matches its manifest', async () => {
    const env = { ...process.env, AWS_ENDPOINT_URL_S3: proxy.url, AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' };
    Object.assign(process.env, env);
    const dir = tempDir();
    const spec = writeSpec(dir, { name: 'faulty-s3', samples: 8, shardSize: 2, dataset: { kind: 'rings', n: 40 }, solvers: [{ solver: 'heun', steps: 4 }], keepStates: 2 });
    const res = await runStudyEmbedded(spec, { out: `s3://${s3.bucket}/study` });
    const direct = openStore(`s3://${s3.bucket}/study`, { ...env, AWS_ENDPOINT_URL_S3: s3.endpoint });
    const keys = await direct.list(`${res.studyId}/`);
    const manifests = keys.filter((k) => k.endsWith('.manifest.json'));
    expect(manifests).toHaveLength(4);
    for (const m of manifests) {
      const man = JSON.parse(new TextDecoder().decode(await direct.get(m))) as ShardManifest;
      for (const f of man.files) expect(sha(await direct.get(f.key)), f.key).toBe(f.sha256);
    }
    expect(keys.filter((k) => /\.tmp|upload/i.test(k))).toEqual([]);
    expect(keys).toContain(`${res.studyId}/summary/report.html`);
  });
});
