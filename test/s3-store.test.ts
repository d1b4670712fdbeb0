import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { openStore, S3Store } from '@trajlab/storage';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRecordingProxy, startS3, S3_TEST_CREDENTIALS, type TestS3 } from './s3-server.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('S3 object store against a real S3 server over HTTP', () => {
  let s3: TestS3;
  beforeAll(async () => {
    s3 = await startS3();
  });
  afterAll(async () => s3?.stop());

  it.each(['builtin', 'sdk'])('round-trips small objects by sha256, lists, reports missing objects by name (%s requests)', async (client) => {
    const store = openStore(`s3://${s3.bucket}/studies/${client}`, { ...process.env, ...s3.env, TRAJLAB_S3_CLIENT: client });
    expect(store.root).toBe(`s3://${s3.bucket}/studies/${client}`);
    const body = randomBytes(100_000);
    await store.put('x/one.arrow', body);
    await store.put('x/two.json', new TextEncoder().encode('{}'));
    expect(sha(await store.get('x/one.arrow'))).toBe(sha(body));
    expect(await store.exists('x/one.arrow')).toBe(true);
    expect(await store.exists('x/nope')).toBe(false);
    expect(await store.list('x/')).toEqual(['x/one.arrow', 'x/two.json']);
    await expect(store.get('x/nope')).rejects.toThrow(`s3://${s3.bucket}/studies/${client}/x/nope: object not found`);
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

describe("the store's own S3 requests (SigV4 over Node's HTTP client) against a real S3 server", () => {
  let s3: TestS3;
  let sdk: S3Client;
  // every request on its way to the server, as `METHOD path` (the path as sent, still encoded)
  const seen: string[] = [];
  let proxy: { endpoint: string; stop(): Promise<void> } | null = null;
  let endpoint = '';
  beforeAll(async () => {
    s3 = await startS3();
    proxy = await startRecordingProxy(s3.endpoint, (method, url) => seen.push(`${method} ${url}`));
    endpoint = proxy.endpoint;
    sdk = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_TEST_CREDENTIALS });
  });
  afterAll(async () => {
    sdk?.destroy();
    await proxy?.stop();
    await s3?.stop();
  });
  const store = (client: 'builtin' | 'sdk', credentials = S3_TEST_CREDENTIALS) => new S3Store({ bucket: s3.bucket, prefix: 'own', endpoint, credentials, client });
  // keys a study could be given through its prefix: spaces, +, =, &, unicode, RFC 3986's reserved characters
  const odd = ['a b/c+d=e&f.arrow', 'ünïcødé/文件/ñ.json', "odd/!'()*~._-/x", 'semi;colon,comma:colon@at$dollar'];

  it('is the default with a custom endpoint; the SDK sends them for AWS itself or when asked', async () => {
    const own = openStore(`s3://${s3.bucket}/own`, { ...s3.env });
    const viaSdk = openStore(`s3://${s3.bucket}/own`, { ...s3.env, TRAJLAB_S3_CLIENT: 'sdk' });
    expect((own as unknown as { requests: unknown }).requests).not.toBeNull();
    expect((viaSdk as unknown as { requests: unknown }).requests).toBeNull();
    expect((new S3Store({ bucket: s3.bucket, region: 'us-east-1' }) as unknown as { requests: unknown }).requests).toBeNull();
    expect(() => openStore(`s3://${s3.bucket}/own`, { ...s3.env, TRAJLAB_S3_CLIENT: 'fast' })).toThrow(/TRAJLAB_S3_CLIENT must be builtin or sdk; got 'fast'/);
    expect(() => openStore(`s3://${s3.bucket}/own`, { TRAJLAB_S3_CLIENT: 'builtin' })).toThrow(/TRAJLAB_S3_CLIENT=builtin needs a custom endpoint/);
  });

  it('sends the paths the SDK sends, writes objects the SDK reads and lists under the same keys, reads what it wrote', async () => {
    const own = store('builtin');
    for (const [i, key] of odd.entries()) {
      const body = randomBytes(1000 + 37_000 * i);
      seen.length = 0;
      await own.put(key, body);
      const read = await sdk.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `own/${key}` }));
      expect(sha(await read.Body!.transformToByteArray())).toBe(sha(body));
      // the same key, encoded alike by both (what a server that checks signatures recomputes them from)
      const [ours, theirs] = seen.map((r) => r.split(' ')[1]!.split('?')[0]);
      expect(seen).toHaveLength(2);
      expect(ours).toBe(theirs);
      expect(sha(await own.get(key))).toBe(sha(body));
      expect(await own.exists(key)).toBe(true);
      const other = randomBytes(5000);
      await sdk.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `own/${key}.sdk`, Body: other }));
      expect(sha(await own.get(`${key}.sdk`))).toBe(sha(other));
    }
    const listed = await sdk.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'own/' }));
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual(odd.flatMap((k) => [`own/${k}`, `own/${k}.sdk`]).sort());
    expect(await own.list('')).toEqual(odd.flatMap((k) => [k, `${k}.sdk`]).sort());
    await expect(own.get('missing/one')).rejects.toThrow(`s3://${s3.bucket}/own/missing/one: object not found`);
    expect(await own.exists('missing/one')).toBe(false);
    // an empty object, and one the same store overwrites
    await own.put('empty', new Uint8Array(0));
    expect((await own.get('empty')).length).toBe(0);
    await own.put('empty', new Uint8Array([7]));
    expect([...(await own.get('empty'))]).toEqual([7]);
  });

  it("signs with the SDK's credentials chain when none are given (a profile file here), and with nothing else", async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 's3-profile-'));
    const file = join(dir, 'credentials');
    writeFileSync(file, `[good]\naws_access_key_id = ${S3_TEST_CREDENTIALS.accessKeyId}\naws_secret_access_key = ${S3_TEST_CREDENTIALS.secretAccessKey}\n[unknown]\naws_access_key_id = NOT-A-KEY\naws_secret_access_key = x\n`);
    const saved = { ...process.env };
    try {
      for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) delete process.env[k];
      Object.assign(process.env, { AWS_SHARED_CREDENTIALS_FILE: file, AWS_CONFIG_FILE: join(dir, 'config'), AWS_PROFILE: 'good' });
      const viaProfile = new S3Store({ bucket: s3.bucket, prefix: 'own', endpoint, client: 'builtin' });
      const body = randomBytes(2000);
      await viaProfile.put('profile.bin', body);
      expect(sha(await viaProfile.get('profile.bin'))).toBe(sha(body));
      // the server knows the key: the one the request was signed with came from the profile
      process.env.AWS_PROFILE = 'unknown';
      await expect(new S3Store({ bucket: s3.bucket, prefix: 'own', endpoint, client: 'builtin' }).get('profile.bin')).rejects.toThrow('download failed (InvalidAccessKeyId:');
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });

  it('a refused request (unknown access key) fails at once, naming the object and the store\'s error, without retries', async () => {
    const wrong = store('builtin', { accessKeyId: 'NOT-A-KEY', secretAccessKey: 'x' });
    seen.length = 0;
    await expect(wrong.put('x.arrow', new Uint8Array([1]))).rejects.toThrow(`s3://${s3.bucket}/own/x.arrow: upload failed (InvalidAccessKeyId:`);
    await expect(wrong.get('a b/c+d=e&f.arrow')).rejects.toThrow(`s3://${s3.bucket}/own/a b/c+d=e&f.arrow: download failed (InvalidAccessKeyId:`);
    await expect(wrong.exists('a b/c+d=e&f.arrow')).rejects.toThrow(`s3://${s3.bucket}/own/a b/c+d=e&f.arrow: HEAD failed (HTTP 403)`);
    expect(seen).toEqual([`PUT /${s3.bucket}/own/x.arrow`, `GET /${s3.bucket}/own/a%20b/c%2Bd%3De%26f.arrow`, `HEAD /${s3.bucket}/own/a%20b/c%2Bd%3De%26f.arrow`]);
    expect(await store('builtin').exists('x.arrow')).toBe(false);
  });
});
