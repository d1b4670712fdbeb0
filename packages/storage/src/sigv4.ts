import { createHash, createHmac } from 'node:crypto';

/**
 * AWS Signature Version 4 for S3 requests, signed in the Authorization header (AWS's "Signature Version 4 signing
 * process": canonical request, string to sign, a key derived from the secret by date, region and service).
 */

/** Credentials a request is signed with. */
export interface SigningCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** Temporary credentials' token, sent (and signed) as x-amz-security-token. @defaultValue none */
  sessionToken?: string;
}

/** What is signed of one request. */
export interface RequestToSign {
  method: string;
  /** The Host header: hostname, with `:port` unless it is the scheme's default. */
  host: string;
  /** The path as sent, already encoded (see encodeKeyPath); S3 signs it as it is, without a second encoding. */
  path: string;
  /** Hex sha256 of the body (of the empty string for a request without one). */
  payloadHash: string;
}

/** sha256 of `data` in hex. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The hex sha256 of an empty body (GET, HEAD). */
export const EMPTY_PAYLOAD_HASH = sha256Hex('');

/** Percent-encodes one path segment as SigV4 wants: every byte but A-Z a-z 0-9 - . _ ~, in upper-case hex. */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** An object key as a URL path: each '/'-separated segment encoded, the slashes kept. */
export function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeSegment).join('/');
}

/** The signing key of one day, region and service: HMAC chain from "AWS4" + secret. Cached: it changes once a day. */
let cachedKey: { id: string; key: Buffer } | null = null;
function signingKey(secret: string, day: string, region: string, service: string): Buffer {
  const id = `${secret}\n${day}\n${region}\n${service}`;
  if (cachedKey?.id !== id) {
    const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
    cachedKey = { id, key: hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request') };
  }
  return cachedKey.key;
}

/** 20261130T041552Z: the request time as x-amz-date writes it. */
export function amzDate(date: Date): string {
  return date.toISOString().replace(/[-:]|\.\d{3}/g, '');
}

/**
 * The headers that sign `req` at `date`: host, x-amz-date, x-amz-content-sha256, x-amz-security-token (temporary
 * credentials only) and authorization. The request must send them as they are; it may send others unsigned.
 */
export function signS3Request(req: RequestToSign, credentials: SigningCredentials, region: string, date: Date, service = 's3'): Record<string, string> {
  const when = amzDate(date);
  const day = when.slice(0, 8);
  const signed: Record<string, string> = { host: req.host, 'x-amz-content-sha256': req.payloadHash, 'x-amz-date': when };
  if (credentials.sessionToken) signed['x-amz-security-token'] = credentials.sessionToken;
  const names = Object.keys(signed).sort();
  const canonicalRequest = [
    req.method,
    req.path,
    '', // no query string
    ...names.map((n) => `${n}:${signed[n]!.trim()}`),
    '',
    names.join(';'),
    req.payloadHash,
  ].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', when, scope, sha256Hex(canonicalRequest)].join('\n');
  const signature = createHmac('sha256', signingKey(credentials.secretAccessKey, day, region, service)).update(stringToSign).digest('hex');
  return {
    ...signed,
    authorization: `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`,
  };
}
