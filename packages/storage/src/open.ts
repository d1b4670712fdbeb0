import { FsStore } from './fs-store.js';
import { parseS3Uri, s3OptionsFromEnv, S3Store } from './s3-store.js';
import { StoreError, type ObjectStore } from './store.js';

/** True for s3://bucket/prefix URIs. */
export function isS3Uri(uri: string): boolean {
  return uri.startsWith('s3://');
}

/**
 * Opens the store for an output location: a local directory (created on first write) or s3://bucket/prefix (configured
 * by the standard AWS variables, see s3OptionsFromEnv). Unknown URI schemes are refused.
 */
export function openStore(uri: string, env: NodeJS.ProcessEnv = process.env): ObjectStore {
  if (isS3Uri(uri)) {
    const { bucket, prefix } = parseS3Uri(uri);
    return new S3Store(s3OptionsFromEnv(bucket, prefix, env));
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  if (scheme) throw new StoreError(uri, `unsupported URI scheme '${scheme[1]}://' (use a local path)`);
  return new FsStore(uri);
}

const sharedStores = new Map<string, ObjectStore>();

/**
 * openStore's store for `uri` (configured from this process's environment), one per process and output root: a
 * service that handles many jobs keeps one S3 client, with its open connections, instead of building one per job
 * (~1.5 ms of CPU and a new connection each, on the client and the server).
 */
export function sharedStore(uri: string): ObjectStore {
  let store = sharedStores.get(uri);
  if (!store) {
    store = openStore(uri);
    sharedStores.set(uri, store);
  }
  return store;
}
