import { FsStore } from './fs-store.js';
import { StoreError, type ObjectStore } from './store.js';

/** True for s3://bucket/prefix URIs. */
export function isS3Uri(uri: string): boolean {
  return uri.startsWith('s3://');
}

/**
 * Opens the store for an output location: a local directory (created on first write) or, once the S3 store is
 * available, s3://bucket/prefix. Unknown URI schemes are refused.
 */
export function openStore(uri: string): ObjectStore {
  if (isS3Uri(uri)) {
    throw new StoreError(uri, 'S3 outputs need the S3 object store of the distributed pipeline, which this build does not include yet; use a local directory');
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  if (scheme) throw new StoreError(uri, `unsupported URI scheme '${scheme[1]}://' (use a local path)`);
  return new FsStore(uri);
}
