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
