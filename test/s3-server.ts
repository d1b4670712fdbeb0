import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// s3rver: an S3-compatible server over real HTTP, started by the tests.
import S3rver from 's3rver';

/** Credentials of the test server (s3rver accepts these fixed development keys). */
export const S3_TEST_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** Environment for child processes and openStore. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** Starts s3rver on a free port with a fresh directory and bucket. */
export async function startS3(bucket = 'trajlab-test'): Promise<TestS3> {
  const dir = mkdtempSync(join(tmpdir(), 's3rver-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', directory: dir, silent: true });
  const { port } = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_TEST_CREDENTIALS });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return {
    endpoint,
    bucket,
    env: { AWS_ENDPOINT_URL_S3: endpoint, AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1' },
    stop: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Reads a whole request, forwards it to `target` and hands over the whole response (as a load balancer would). */
export function forwardWhole(target: URL, req: IncomingMessage, onResponse: (status: number, headers: IncomingHttpHeaders, body: Buffer) => void, onError: () => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const forward = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const body: Buffer[] = [];
      up.on('data', (c: Buffer) => body.push(c));
      up.on('end', () => onResponse(up.statusCode ?? 500, up.headers, Buffer.concat(body)));
    });
    forward.on('error', onError);
    forward.end(Buffer.concat(chunks));
  });
}

/**
 * An HTTP proxy in front of `target` that forwards every request whole and answers it `delayMs` after the server
 * behind it did (as a store across a network would), telling `onRequest` of each (method and URL as sent, still
 * encoded). Returns its endpoint and a stop function.
 */
function startProxy(target: string, { delayMs = 0, onRequest }: { delayMs?: number; onRequest?: (method: string, url: string) => void }): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const server = createServer((req, res) => {
    onRequest?.(req.method ?? '', req.url ?? '');
    forwardWhole(
      new URL(target),
      req,
      (status, headers, body) => {
        const send = () => {
          res.writeHead(status, headers);
          res.end(body);
        };
        if (delayMs > 0) setTimeout(send, delayMs);
        else send();
      },
      () => res.destroy(),
    );
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        stop: () => new Promise<void>((r) => server.close(() => r())),
      }),
    ),
  );
}

/** A proxy that answers every request `ms` milliseconds after the S3 server behind it did (see startProxy). */
export function startLatencyProxy(target: string, ms: number): Promise<{ endpoint: string; stop(): Promise<void> }> {
  return startProxy(target, { delayMs: ms });
}

/** A proxy that tells `onRequest` of every request on its way to `target` (see startProxy). */
export function startRecordingProxy(target: string, onRequest: (method: string, url: string) => void): Promise<{ endpoint: string; stop(): Promise<void> }> {
  return startProxy(target, { onRequest });
}
