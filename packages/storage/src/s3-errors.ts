/** An S3 error answer: the HTTP status and S3's error code (from the XML body; empty for HEAD). */
export class S3ResponseError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = code || `HTTP ${status}`;
  }
}

/**
 * Whether another attempt may succeed: a network error (anything but an S3 answer), or an answer saying the server
 * or the network failed (5xx, 408, 429, S3's RequestTimeout and SlowDown) rather than refusing the request.
 */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof S3ResponseError)) return true;
  return err.status >= 500 || err.status === 408 || err.status === 429 || err.code === 'RequestTimeout' || err.code === 'SlowDown';
}
