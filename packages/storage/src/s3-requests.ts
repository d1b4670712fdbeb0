import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { isTransient, S3ResponseError } from './s3-errors.js';
import { EMPTY_PAYLOAD_HASH, encodeKeyPath, sha256Hex, signS3Request, type SigningCredentials } from './sigv4.js';

/**
 * PUT, GET and HEAD of single objects on an S3-compatible endpoint, signed with SigV4 and sent over Node's own HTTP
 * client with kept-alive connections. These are the requests a study makes by the hundred (three per shard from the
 * workers, two per shard from the aggregator); the AWS SDK spends ~2-4 ms of CPU on each beyond the request itself
 * (its middleware stack, serialisers, endpoint rules), more than the request, so they bypass it. The SDK still does
 * everything else (listing, multipart uploads, the credentials chain).
 */

/** Where and how the requests go. */
export interface S3RequestsOptions {
  /** The endpoint, e.g. http://127.0.0.1:8333 (a path after the host is kept as a prefix of every request's path). */
  endpoint: URL;
  bucket: string;
  /** The region requests are signed for. */
  region: string;
  /** Bucket in the path (endpoint/bucket/key) rather than in the host name (bucket.endpoint/key). */
  pathStyle: boolean;
  /** The credentials to sign with, asked for before each request (the caller caches them). */
  credentials: () => Promise<SigningCredentials>;
  /** Attempts per request; transient failures (see isTransient) are retried. */
  maxAttempts: number;
  /** A request whose connection stays silent this long is abandoned (and retried). @defaultValue 120000 ms */
  idleTimeoutMs?: number;
}

/** Connections are kept open between requests and shared by every store of the process. */
const agents = { http: new HttpAgent({ keepAlive: true, scheduling: 'lifo' }), https: new HttpsAgent({ keepAlive: true, scheduling: 'lifo' }) };

/** The text of one XML element of an S3 error body, or ''. */
function xmlElement(body: string, name: string): string {
  return new RegExp(`<${name}>([^<]*)</${name}>`).exec(body)?.[1] ?? '';
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export class S3Requests {
  private readonly base: { protocol: string; host: string; hostname: string; port: string; path: string };
  private readonly idleTimeoutMs: number;

  constructor(private readonly opts: S3RequestsOptions) {
    const e = opts.endpoint;
    const prefix = e.pathname.replace(/\/+$/, '');
    const host = opts.pathStyle ? e.host : `${opts.bucket}.${e.host}`;
    this.base = {
      protocol: e.protocol,
      host,
      hostname: opts.pathStyle ? e.hostname : `${opts.bucket}.${e.hostname}`,
      port: e.port,
      path: opts.pathStyle ? `${prefix}/${encodeKeyPath(opts.bucket)}` : prefix,
    };
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 120_000;
  }

  /** The URL a request for `key` goes to (the bucket in the path or in the host name, the key encoded). */
  urlOf(key: string): string {
    return `${this.base.protocol}//${this.base.host}${this.pathOf(key)}`;
  }

  /** The request path for `key`, as sent and signed. */
  private pathOf(key: string): string {
    return `${this.base.path}/${encodeKeyPath(key)}`;
  }

  /** Stores `body` under `key` (a single PutObject: atomic, the whole object or nothing). */
  async put(key: string, body: Uint8Array): Promise<void> {
    await this.send('PUT', key, body);
  }

  /** The object's bytes; an S3ResponseError with status 404 when there is none. */
  async get(key: string): Promise<Uint8Array> {
    const answer = await this.send('GET', key, null);
    return answer.body;
  }

  /** Whether the object exists (HEAD). */
  async head(key: string): Promise<boolean> {
    try {
      await this.send('HEAD', key, null);
      return true;
    } catch (err) {
      if (err instanceof S3ResponseError && err.status === 404) return false;
      throw err;
    }
  }

  /** One request with its retries: exponential backoff with full jitter (0.1 s doubling, at most 20 s), as AWS advises. */
  private async send(method: 'PUT' | 'GET' | 'HEAD', key: string, body: Uint8Array | null): Promise<Answer> {
    const payloadHash = body ? sha256Hex(body) : EMPTY_PAYLOAD_HASH;
    let last: unknown;
    for (let attempt = 0; attempt < this.opts.maxAttempts; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, Math.random() * Math.min(20_000, 100 * 2 ** attempt)));
      try {
        const answer = await this.once(method, key, body, payloadHash, await this.opts.credentials());
        if (answer.status < 300) return answer;
        const text = answer.body.toString('utf8');
        const code = xmlElement(text, 'Code') || (answer.status === 404 ? 'NotFound' : '');
        throw new S3ResponseError(answer.status, code, xmlElement(text, 'Message') || `HTTP ${answer.status}`);
      } catch (err) {
        last = err;
        if (!isTransient(err)) throw err;
      }
    }
    throw last;
  }

  /** One HTTP exchange: the signed request, and the whole answer (a body shorter than its Content-Length fails). */
  private once(method: string, key: string, body: Uint8Array | null, payloadHash: string, credentials: SigningCredentials): Promise<Answer> {
    const path = this.pathOf(key);
    const headers: Record<string, string | number> = signS3Request({ method, host: this.base.host, path, payloadHash }, credentials, this.opts.region, new Date());
    if (body) headers['content-length'] = body.length;
    const https = this.base.protocol === 'https:';
    return new Promise<Answer>((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(
        { protocol: this.base.protocol, hostname: this.base.hostname, port: this.base.port || undefined, method, path, headers, agent: https ? agents.https : agents.http },
        (res) => {
          // a body of announced length is read straight into one buffer of that size (no list of chunks joined at
          // the end: a second copy of every object read); one of another length is an error
          const header = method === 'HEAD' ? undefined : res.headers['content-length'];
          const expected = header === undefined ? -1 : Number(header);
          let into: Buffer | null = null;
          try {
            if (expected >= 0) into = Buffer.allocUnsafe(expected);
          } catch {
            res.destroy();
            reject(new Error(`${method} ${path}: cannot hold an answer of ${header} bytes`));
            return;
          }
          const chunks: Buffer[] = [];
          let received = 0;
          res.on('data', (c: Buffer) => {
            if (into && received + c.length <= expected) into.set(c, received);
            else if (!into) chunks.push(c);
            received += c.length;
          });
          res.on('error', reject);
          res.on('close', () => {
            if (!res.complete) reject(new Error(`${method} ${path}: connection closed mid-answer`));
          });
          res.on('end', () => {
            if (into && received !== expected) reject(new Error(`${method} ${path}: answer of ${received} bytes where Content-Length said ${expected}`));
            else resolve({ status: res.statusCode ?? 0, headers: res.headers, body: into ?? (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)) });
          });
        },
      );
      req.setTimeout(this.idleTimeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer for ${this.idleTimeoutMs / 1000} s`)));
      req.on('error', reject);
      req.end(body ?? undefined);
    });
  }
}
