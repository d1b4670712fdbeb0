import { SignatureV4 } from '@smithy/signature-v4';
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { S3Requests } from './s3-requests.js';
import { amzDate, EMPTY_PAYLOAD_HASH, encodeKeyPath, sha256Hex, signS3Request, type SigningCredentials } from './sigv4.js';

/** The bytes of the SDK's SourceData (string, ArrayBuffer or a view). */
const bytesOf = (data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array =>
  typeof data === 'string' ? data : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);

/** node:crypto's sha256 and HMAC-sha256 in the shape @smithy/signature-v4 asks for. */
class NodeSha256 {
  private readonly hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytesOf(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(bytesOf(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

/** The Authorization header the AWS SDK's own signer (as its S3 client configures it) gives the same request. */
async function referenceAuthorization(method: string, hostname: string, port: number | undefined, path: string, payloadHash: string, credentials: SigningCredentials, region: string, date: Date) {
  const signer = new SignatureV4({ service: 's3', region, credentials, sha256: NodeSha256, uriEscapePath: false, applyChecksum: false });
  const host = port ? `${hostname}:${port}` : hostname;
  const signed = await signer.sign(
    { method, protocol: 'http:', hostname, port, path, query: {}, headers: { host, 'x-amz-content-sha256': payloadHash } },
    { signingDate: date },
  );
  return signed.headers['authorization'];
}

describe('SigV4 signing of S3 requests', () => {
  const keys = ['studies/perf-0123456789/shards/euler-polynomial-rho7-s20/000.steps.arrow', 'a b/c+d=e&f', 'ünïcødé/文件/ñ.json', "odd/!'()*~._-/x", 'semi;colon,comma:colon@at$dollar'];
  const credentials: SigningCredentials[] = [
    { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
    { accessKeyId: 'ASIATEMP', secretAccessKey: 'tmp/secret+key', sessionToken: 'FwoGZXIvYXdzEJr//////////session+token=' },
  ];

  it('gives the same Authorization header as the AWS SDK signer for every key, method, payload, region and date', async () => {
    let checked = 0;
    for (const key of keys) {
      for (const creds of credentials) {
        for (const [method, body] of [['PUT', new Uint8Array([1, 2, 3, 250])], ['GET', null], ['HEAD', null]] as const) {
          for (const [region, date] of [['us-east-1', new Date('2026-11-30T04:15:52.123Z')], ['eu-west-3', new Date('2027-01-01T00:00:00.000Z')]] as const) {
            const path = `/trajlab-test/${encodeKeyPath(key)}`;
            const payloadHash = body ? sha256Hex(body) : EMPTY_PAYLOAD_HASH;
            const ours = signS3Request({ method, host: '127.0.0.1:8333', path, payloadHash }, creds, region, date);
            expect(ours['authorization']).toBe(await referenceAuthorization(method, '127.0.0.1', 8333, path, payloadHash, creds, region, date));
            expect(ours['x-amz-date']).toBe(amzDate(date));
            expect(ours['x-amz-security-token']).toBe(creds.sessionToken);
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(keys.length * 2 * 3 * 2);
  });

  it('signs for the host it is given (the bucket in the host name) and changes with every signed part', async () => {
    const creds = credentials[0]!;
    const date = new Date('2026-11-30T12:00:00Z');
    const base = { method: 'GET', host: 'trajlab-test.s3.example.com', path: '/x/y.arrow', payloadHash: EMPTY_PAYLOAD_HASH };
    const auth = signS3Request(base, creds, 'us-east-1', date)['authorization'];
    expect(auth).toBe(await referenceAuthorization('GET', 'trajlab-test.s3.example.com', undefined, '/x/y.arrow', EMPTY_PAYLOAD_HASH, creds, 'us-east-1', date));
    const variants = [
      signS3Request({ ...base, method: 'HEAD' }, creds, 'us-east-1', date),
      signS3Request({ ...base, host: 'other.s3.example.com' }, creds, 'us-east-1', date),
      signS3Request({ ...base, path: '/x/z.arrow' }, creds, 'us-east-1', date),
      signS3Request({ ...base, payloadHash: sha256Hex('x') }, creds, 'us-east-1', date),
      signS3Request(base, { ...creds, secretAccessKey: 'other' }, 'us-east-1', date),
      signS3Request(base, creds, 'us-west-2', date),
      signS3Request(base, creds, 'us-east-1', new Date(date.getTime() + 1000)),
    ].map((h) => h['authorization']);
    expect(new Set([auth, ...variants]).size).toBe(variants.length + 1);
  });

  it('encodes key segments as RFC 3986 wants and keeps the slashes', () => {
    expect(encodeKeyPath('a b/c+d/ü/~._-/!*')).toBe('a%20b/c%2Bd/%C3%BC/~._-/%21%2A');
  });
});

describe("the store's own requests' URLs", () => {
  const at = (endpoint: string, pathStyle: boolean) =>
    new S3Requests({ endpoint: new URL(endpoint), bucket: 'trajlab-test', region: 'us-east-1', pathStyle, maxAttempts: 1, credentials: async () => ({ accessKeyId: 'a', secretAccessKey: 'b' }) });

  it('put the bucket in the path or in the host name, keep an endpoint path as a prefix, and encode the key', () => {
    expect(at('http://127.0.0.1:8333', true).urlOf('s/a b.arrow')).toBe('http://127.0.0.1:8333/trajlab-test/s/a%20b.arrow');
    expect(at('https://s3.example.com', false).urlOf('s/a b.arrow')).toBe('https://trajlab-test.s3.example.com/s/a%20b.arrow');
    expect(at('https://gw.example.com:9000/store/', true).urlOf('k')).toBe('https://gw.example.com:9000/store/trajlab-test/k');
    expect(at('https://gw.example.com:9000/store', false).urlOf('k')).toBe('https://trajlab-test.gw.example.com:9000/store/k');
  });
});
