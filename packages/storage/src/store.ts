/** Where study outputs live: a local directory now, S3-compatible storage with the distributed pipeline. */
export interface ObjectStore {
  /** The root as the user wrote it (a directory or s3://bucket/prefix). */
  readonly root: string;
  /** Writes an object atomically: readers see the old object, no object, or the whole new one, never a part. */
  put(key: string, body: Uint8Array): Promise<void>;
  /** Reads an object; throws StoreError naming the object when it does not exist. */
  get(key: string): Promise<Uint8Array>;
  /** Whether an object exists. */
  exists(key: string): Promise<boolean>;
  /** Keys below a prefix, sorted. */
  list(prefix: string): Promise<string[]>;
  /** Full location of a key, for messages and printed paths. */
  locate(key: string): string;
}

/** A store operation that failed; the message names the object. */
export class StoreError extends Error {
  constructor(
    readonly location: string,
    message: string,
  ) {
    super(`${location}: ${message}`);
    this.name = 'StoreError';
  }
}

/** Rejects keys that could escape the store root. */
export function checkKey(key: string): void {
  if (key === '' || key.startsWith('/') || key.split('/').some((p) => p === '..' || p === '.' || p === '')) {
    throw new StoreError(key, 'invalid object key (empty, absolute or with . / .. segments)');
  }
}
