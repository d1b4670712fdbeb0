import { openStore, S3Store } from '@trajlab/storage';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3, S3_TEST_CREDENTIALS, type TestS3 } from './s3-server.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('S3 object store against a real S3 server over HTTP', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => s3?.stop());

  it('round-trips small objects by sha256, lists, reports missing objects by name', async () => {
    const store = openStore(`s3://${s3.bucket}/studies/a`, { ...process.env, ...s3.env });
    expect(store.root).toBe(`s3://${s3.bucket}/studies/a`);
    const body = randomBytes(100_000);
    await store.put('x/one.arrow', body);
    await store.put('x/two.json', new TextEncoder().encode('{}'));
    expect(sha(await store.get('x/one.arrow'))).toBe(sha(body));
    expect(await store.exists('x/one.arrow')).toBe(true);
    expect(await store.exists('x/nope')).toBe(false);
    expect(await store.list('x/')).toEqual(['x/one.arrow', 'x/two.json']);
    await expect(store.get('x/nope')).rejects.toThrow(`s3://${s3.bucket}/studies/a/x/nope: object not found`);
  });

  it('uploads an object above the multipart threshold in parts, byte for byte', async () => {
    const store = new S3Store({
      bucket: s3.bucket,
      prefix: 'mp',
      endpoint: s3.endpoint,
      credentials: S3_TEST_CREDENTIALS,
      multipartThreshold: 6 * 2 ** 20,
      partSize: 5 * 2 ** 20,
    });
    const body = randomBytes(12 * 2 ** 20 + 12345);
    await store.put('big.bin', body);
    expect(sha(await store.get('big.bin'))).toBe(sha(body));
  });

  it('refuses malformed s3 URIs and keys that escape the prefix', () => {
    expect(() => openStore('s3://')).toThrow(/not an s3:\/\/bucket\/prefix URI/);
    const store = openStore(`s3://${s3.bucket}/p`, { ...process.env, ...s3.env });
    expect(() => store.locate('../escape')).toThrow(/invalid object key/);
  });

  it('reads a dataset named by s3://bucket/key (downloaded once into the data cache), same data hash as the local file', async () => {
    const { runStudyEmbedded } = await import('@trajlab/runner');
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 's3data-'));
    const bytes = new Uint8Array([0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 2, 0, 0, 0, 2, ...Array.from({ length: 40 }, (_, i) => (i * 29) % 256)]);
    writeFileSync(join(dir, 'local-idx3-ubyte'), bytes);
    const store = openStore(`s3://${s3.bucket}`, { ...process.env, ...s3.env });
    await store.put('data/remote-idx3-ubyte', bytes);
    Object.assign(process.env, s3.env, { TRAJLAB_DATA_CACHE: join(dir, 'cache') });
    const spec = (uri: string) => `name: s3data\nsamples: 2\ndataset: { kind: idx, uri: ${uri} }\nsolvers: [ { solver: euler, steps: 2 } ]\n`;
    writeFileSync(join(dir, 'remote.yaml'), spec(`s3://${s3.bucket}/data/remote-idx3-ubyte`));
    writeFileSync(join(dir, 'local.yaml'), spec('./local-idx3-ubyte'));
    const remote = await runStudyEmbedded(join(dir, 'remote.yaml'), { out: join(dir, 'out') });
    const local = await runStudyEmbedded(join(dir, 'local.yaml'), { out: join(dir, 'out') });
    const { readFileSync } = await import('node:fs');
    const hash = (r: { studyDir: string }) => JSON.parse(readFileSync(join(r.studyDir, 'study.json'), 'utf8')).data.dataset.contentHash;
    expect(hash(remote)).toBe(hash(local));
    expect(remote.studyId).not.toBe(local.studyId); // the uri as written is part of the spec
  });
});
