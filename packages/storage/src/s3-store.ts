import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { isTransient, S3ResponseError } from './s3-errors.js';
import type { S3Requests, S3RequestsOptions } from './s3-requests.js';
import type { SigningCredentials } from './sigv4.js';
import { checkKey, StoreError, type ObjectStore } from './store.js';

/** Options of the S3 store; each has an environment variable (read by `s3OptionsFromEnv`). */
export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket (no leading or trailing slash). @defaultValue '' */
  prefix?: string;
  /** Custom endpoint, e.g. http://localhost:8333 (AWS_ENDPOINT_URL_S3). @defaultValue AWS */
  endpoint?: string;
  /** AWS_REGION. @defaultValue 'us-east-1' */
  region?: string;
  /** Path-style addressing (TRAJLAB_S3_PATH_STYLE). @defaultValue true with a custom endpoint, else false */
  forcePathStyle?: boolean;
  /**
   * Checksum mode for requests and responses (TRAJLAB_S3_CHECKSUMS). aws-sdk >= 3.729 defaults to WHEN_SUPPORTED, which
   * sends streaming checksums that several S3-compatible servers store as corrupted bodies.
   * @defaultValue 'WHEN_REQUIRED' with a custom endpoint, else 'WHEN_SUPPORTED'
   */
  checksums?: 'WHEN_REQUIRED' | 'WHEN_SUPPORTED';
  /** Objects at least this large are uploaded in parts. @defaultValue 16 MiB */
  multipartThreshold?: number;
  /** Part size of multipart uploads (S3's minimum is 5 MiB except for the last part). @defaultValue 8 MiB */
  partSize?: number;
  /** Attempts per request, with the SDK's exponential backoff and jitter between them. @defaultValue 6 */
  maxAttempts?: number;
  /** Explicit credentials; default: the SDK's chain (environment, profiles, instance roles). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /**
   * Who sends the single-object requests (PUT, GET, HEAD) (TRAJLAB_S3_CLIENT): 'builtin', trajlab's own SigV4 requests
   * over Node's HTTP client (s3-requests.ts; ~1-3 ms less CPU per request than the SDK), or 'sdk', the AWS SDK. Listing,
   * multipart uploads and the credentials chain are the SDK's either way. 'builtin' needs a custom endpoint (AWS's
   * own endpoints, partitions and bucket types are left to the SDK's rules).
   * @defaultValue 'builtin' with a custom endpoint, else 'sdk'
   */
  client?: 'builtin' | 'sdk';
}

/** Reads the S3 options of an s3://bucket/prefix location from the standard AWS variables and trajlab's own. */
export function s3OptionsFromEnv(bucket: string, prefix: string, env: NodeJS.ProcessEnv = process.env): S3StoreOptions {
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  const pathStyle = env.TRAJLAB_S3_PATH_STYLE;
  const checksums = env.TRAJLAB_S3_CHECKSUMS;
  if (checksums && checksums !== 'WHEN_REQUIRED' && checksums !== 'WHEN_SUPPORTED') {
    throw new StoreError(`s3://${bucket}`, `TRAJLAB_S3_CHECKSUMS must be WHEN_REQUIRED or WHEN_SUPPORTED; got '${checksums}'`);
  }
  const client = env.TRAJLAB_S3_CLIENT?.trim().toLowerCase() || undefined;
  if (client && client !== 'builtin' && client !== 'sdk') throw new StoreError(`s3://${bucket}`, `TRAJLAB_S3_CLIENT must be builtin or sdk; got '${env.TRAJLAB_S3_CLIENT}'`);
  return {
    bucket,
    prefix,
    endpoint,
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    forcePathStyle: pathStyle === undefined ? undefined : pathStyle === '1' || pathStyle.toLowerCase() === 'true',
    checksums: checksums as S3StoreOptions['checksums'],
    client: client as S3StoreOptions['client'],
    credentials:
      env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
        ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined }
        : undefined,
  };
}

/** The AWS SDK, imported on first use: commands that never touch S3 do not pay for loading it. */
type S3Sdk = typeof import('@aws-sdk/client-s3');
let sdkModule: Promise<S3Sdk> | null = null;
const loadSdk = (): Promise<S3Sdk> => (sdkModule ??= import('@aws-sdk/client-s3'));

/**
 * Starts loading the AWS SDK now, in the background (a service process that waits for work, so its first S3 request
 * does not pay ~0.3 s for it). A failure surfaces at that first request.
 */
export function preloadS3Sdk(): void {
  loadSdk().catch(() => {});
}

/**
 * The store's own requests (s3-requests.ts), imported on first use like the SDK: node:http, node:https and node:crypto
 * cost every process that never talks to S3 ~13 ms to load.
 */
let requestsModule: Promise<typeof import('./s3-requests.js')> | null = null;
const loadRequests = () => (requestsModule ??= import('./s3-requests.js'));

/** Parses s3://bucket/prefix. */
export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (!m) throw new StoreError(uri, 'not an s3://bucket/prefix URI (bucket: 3-63 lower-case letters, digits, dots, dashes)');
  return { bucket: m[1]!, prefix: (m[2] ?? '').replace(/^\/+|\/+$/g, '') };
}

function errorName(err: unknown): string {
  if (err instanceof S3ResponseError) return err.code || `HTTP ${err.status}`;
  const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e.name ?? e.Code ?? String(err);
}

/** Objects in an S3 bucket under a prefix. PutObject and CompleteMultipartUpload are atomic: no partial object is ever visible. */
export class S3Store implements ObjectStore {
  readonly root: string;
  private readonly config: S3ClientConfig;
  private connection: Promise<{ sdk: S3Sdk; client: S3Client }> | null = null;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  /** How trajlab's own single-object requests go, or null where the SDK sends them (see S3StoreOptions.client). */
  private readonly requests: S3RequestsOptions | null;
  private ownRequests: Promise<S3Requests> | null = null;

  constructor(opts: S3StoreOptions) {
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ?? '';
    this.root = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.multipartThreshold = opts.multipartThreshold ?? 16 * 2 ** 20;
    this.partSize = Math.max(5 * 2 ** 20, opts.partSize ?? 8 * 2 ** 20);
    const custom = Boolean(opts.endpoint);
    const checksums = opts.checksums ?? (custom ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED');
    const config: S3ClientConfig = {
      region: opts.region ?? 'us-east-1',
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle ?? custom,
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
      maxAttempts: opts.maxAttempts ?? 6,
      retryMode: 'standard',
      credentials: opts.credentials,
    };
    this.config = config;
    const client = opts.client ?? (custom ? 'builtin' : 'sdk');
    if (client === 'builtin' && !opts.endpoint) throw new StoreError(this.root, "TRAJLAB_S3_CLIENT=builtin needs a custom endpoint (AWS_ENDPOINT_URL_S3); AWS's own endpoints take the SDK's requests");
    this.requests =
      client === 'builtin'
        ? {
            endpoint: new URL(opts.endpoint!),
            bucket: this.bucket,
            region: config.region as string,
            pathStyle: config.forcePathStyle!,
            maxAttempts: config.maxAttempts as number,
            credentials: opts.credentials ? async () => opts.credentials! : () => this.chainCredentials(),
          }
        : null;
  }

  /** trajlab's own requests, built on first use. */
  private own(options: S3RequestsOptions): Promise<S3Requests> {
    return (this.ownRequests ??= loadRequests().then((m) => new m.S3Requests(options)));
  }

  /** Credentials from the SDK's chain (its provider caches them and renews expiring ones). */
  private async chainCredentials(): Promise<SigningCredentials> {
    const { client } = await this.s3();
    const c = await client.config.credentials();
    return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken };
  }

  /** The SDK and this store's client, created on first use. */
  private s3(): Promise<{ sdk: S3Sdk; client: S3Client }> {
    return (this.connection ??= loadSdk().then((sdk) => ({ sdk, client: new sdk.S3Client(this.config) })));
  }

  private objectKey(key: string): string {
    checkKey(key);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  locate(key: string): string {
    return `s3://${this.bucket}/${this.objectKey(key)}`;
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    const Key = this.objectKey(key);
    // Each request is retried (by the SDK or by S3Requests); on top of that a whole upload is retried (with backoff)
    // when a request still fails, e.g. a connection dropped after the server completed a multipart upload, but not when
    // the store refused it (access denied, a bad signature: the same again would fail the same). Uploads are atomic and
    // carry the same bytes each time, so repeating one is safe.
    let last: unknown;
    for (let attempt = 0; attempt < 4; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      try {
        if (body.length < this.multipartThreshold && this.requests) {
          await (await this.own(this.requests)).put(Key, body);
        } else if (body.length < this.multipartThreshold) {
          const s3 = await this.s3();
          await s3.client.send(new s3.sdk.PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length }));
        } else {
          await this.putMultipart(Key, body);
        }
        return;
      } catch (err) {
        last = err;
        if (!isTransient(err)) break;
      }
    }
    throw new StoreError(this.locate(key), `upload failed (${errorName(last)}: ${(last as Error).message})`);
  }

  /** Multipart upload; aborted on failure so no parts linger. The object appears only on completion. */
  private async putMultipart(Key: string, body: Uint8Array): Promise<void> {
    const s3 = await this.s3();
    const { UploadId } = await s3.client.send(new s3.sdk.CreateMultipartUploadCommand({ Bucket: this.bucket, Key }));
    try {
      const parts: { ETag: string; PartNumber: number }[] = [];
      for (let off = 0, n = 1; off < body.length; off += this.partSize, n++) {
        const chunk = body.subarray(off, Math.min(body.length, off + this.partSize));
        const res = await s3.client.send(new s3.sdk.UploadPartCommand({ Bucket: this.bucket, Key, UploadId, PartNumber: n, Body: chunk, ContentLength: chunk.length }));
        parts.push({ ETag: res.ETag!, PartNumber: n });
      }
      await s3.client.send(new s3.sdk.CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await s3.client.send(new s3.sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId })).catch(() => {});
      throw err;
    }
  }

  async get(key: string): Promise<Uint8Array> {
    try {
      if (this.requests) return await (await this.own(this.requests)).get(this.objectKey(key));
      const s3 = await this.s3();
      const res = await s3.client.send(new s3.sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return await res.Body!.transformToByteArray();
    } catch (err) {
      const name = errorName(err);
      throw new StoreError(this.locate(key), name === 'NoSuchKey' || name === 'NotFound' ? 'object not found' : `download failed (${name}: ${(err as Error).message})`);
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      if (this.requests) return await (await this.own(this.requests)).head(this.objectKey(key));
      const s3 = await this.s3();
      await s3.client.send(new s3.sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return true;
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return false;
      throw new StoreError(this.locate(key), `HEAD failed (${errorName(err)})`);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const s3 = await this.s3();
    const full = this.prefix ? `${this.prefix}/${prefix}` : prefix;
    const out: string[] = [];
    let token: string | undefined;
    do {
      const res = await s3.client.send(new s3.sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token }));
      for (const o of res.Contents ?? []) if (o.Key) out.push(this.prefix ? o.Key.slice(this.prefix.length + 1) : o.Key);
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }
}
