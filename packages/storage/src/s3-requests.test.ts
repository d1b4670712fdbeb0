import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { S3Requests } from './s3-requests.js';

/** A raw TCP server answering every request with `answer(n)` (n counts requests from 0), then as `after` says. */
function rawServer(answer: (n: number) => string, after: 'keep' | 'close'): Promise<{ server: Server; endpoint: string; requests: () => number }> {
  let n = 0;
  const server = createServer((socket: Socket) => {
    socket.on('data', (d) => {
      // one request per packet is enough for these small GETs
      if (!d.toString('latin1').includes('\r\n\r\n')) return;
      socket.write(Buffer.from(answer(n++), 'latin1'));
      if (after === 'close') socket.end();
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests: () => n })),
  );
}

const requestsTo = (endpoint: string, maxAttempts: number) =>
  new S3Requests({ endpoint: new URL(endpoint), bucket: 'b', region: 'us-east-1', pathStyle: true, maxAttempts, credentials: async () => ({ accessKeyId: 'a', secretAccessKey: 's' }) });

describe("the store's own requests read answers whole or not at all", () => {
  let open: Server | null = null;
  afterEach(() => open?.close());

  it('reads a body of announced length byte for byte, and one sent in chunks without a length', async () => {
    const body = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256));
    const fixed = await rawServer(() => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body.toString('latin1')}`, 'keep');
    open = fixed.server;
    expect(Buffer.from(await requestsTo(fixed.endpoint, 1).get('k')).equals(body)).toBe(true);
    fixed.server.close();
    const chunked = await rawServer(() => `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n`, 'keep');
    open = chunked.server;
    expect(Buffer.from(await requestsTo(chunked.endpoint, 1).get('k')).toString()).toBe('abcde');
  });

  it('a body cut short of its Content-Length is an error after every attempt, never a short object', async () => {
    const cut = await rawServer(() => `HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n${'x'.repeat(50)}`, 'close');
    open = cut.server;
    await expect(requestsTo(cut.endpoint, 3).get('k')).rejects.toThrow(/GET \/b\/k: connection closed mid-answer|aborted/);
    expect(cut.requests()).toBe(3);
  });

  it('an S3 error answer is raised with its status and code, and a 5xx is retried', async () => {
    const xml = '<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>busy</Message></Error>';
    const busyThenOk = await rawServer((n) => (n < 2 ? `HTTP/1.1 503 Slow Down\r\nContent-Length: ${xml.length}\r\n\r\n${xml}` : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 'keep');
    open = busyThenOk.server;
    expect(Buffer.from(await requestsTo(busyThenOk.endpoint, 3).get('k')).toString()).toBe('ok');
    expect(busyThenOk.requests()).toBe(3);
    busyThenOk.server.close();
    const denied = '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>';
    const refusing = await rawServer(() => `HTTP/1.1 403 Forbidden\r\nContent-Length: ${denied.length}\r\n\r\n${denied}`, 'keep');
    open = refusing.server;
    await expect(requestsTo(refusing.endpoint, 5).get('k')).rejects.toMatchObject({ status: 403, code: 'AccessDenied', message: 'no' });
    expect(refusing.requests()).toBe(1);
  });
});
