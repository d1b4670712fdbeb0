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
});
