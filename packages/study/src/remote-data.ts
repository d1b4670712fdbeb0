import { copyModel, ModelFileError, splitModelUri } from '@trajlab/models';
import { FsStore, openStore, StoreError } from '@trajlab/storage';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SpecError } from './errors.js';

/**
 * Dataset files named by s3://bucket/key are downloaded once into a local cache (TRAJLAB_DATA_CACHE, default
 * <tmpdir>/trajlab-data-cache-<uid>, see privateCacheDir) before a spec is resolved; resolution then reads the cached
 * copy. The uri as written stays in the spec (and the study id); the dataset's content hash is what guarantees every
 * process reads the same data. The cache also holds decoded IDX copies and certified pruning's tables: what is in it is
 * trusted, so the default is a directory of this user's alone.
 */
export function dataCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TRAJLAB_DATA_CACHE) return env.TRAJLAB_DATA_CACHE;
  const uid = typeof process.getuid === 'function' ? process.getuid() : null;
  return uid === null ? join(tmpdir(), 'trajlab-data-cache') : privateCacheDir(join(tmpdir(), `trajlab-data-cache-${uid}`), uid);
}

/** The default data cache cannot be used: it is not a directory of this user's alone. */
export class DataCacheError extends Error {
  constructor(
    readonly dir: string,
    why: string,
  ) {
    super(`${dir}: the default data cache ${why}; set TRAJLAB_DATA_CACHE to a directory of your own`);
    this.name = 'DataCacheError';
  }
}

/**
 * `dir` (in a directory other users can write, such as /tmp), created if missing with access for user `uid` alone, and
 * checked to be a real directory that `uid` owns and nobody else can write: otherwise another user could have made it
 * first and filled it with data every later run would trust. Throws DataCacheError naming it. One that cannot be made
 * is returned as it is: there is nothing in it.
 */
export function privateCacheDir(dir: string, uid: number): string {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch {
    // there already, or it cannot be made (a read-only tmpdir, say): then nothing in it can be trusted by mistake, and
    // whoever writes there fails as without a cache (decoded copies and pruning tables are then made in each process)
  }
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return dir;
  }
  if (!st.isDirectory()) throw new DataCacheError(dir, 'is not a directory (a link or a file is in its place)');
  if (st.uid !== uid) throw new DataCacheError(dir, `belongs to another user (uid ${st.uid})`);
  if ((st.mode & 0o022) !== 0) throw new DataCacheError(dir, `can be written by other users (mode ${(st.mode & 0o777).toString(8)})`);
  return dir;
}

/** Where an s3:// dataset uri is cached locally. */
export function cachedPath(uri: string, env: NodeJS.ProcessEnv = process.env): string {
  const name = uri.split('/').pop() || 'data';
  return join(dataCacheDir(env), `${createHash('sha256').update(uri).digest('hex').slice(0, 16)}-${name}`);
}

/** Where an s3:// model is cached locally (a directory holding model.json, its shards and trajlab-model.json). */
export function cachedModelDir(uri: string, env: NodeJS.ProcessEnv = process.env): string {
  return cachedPath(`${splitModelUri(uri).dir}/`, env);
}

/** Every s3:// tfjs model uri of a spec. */
function modelUris(raw: unknown): { uri: string; field: string }[] {
  const spec = raw as Record<string, { kind?: unknown; uri?: unknown } | undefined>;
  return (['denoiser', 'compare'] as const)
    .filter((k) => spec?.[k]?.kind === 'tfjs' && typeof spec[k]?.uri === 'string' && (spec[k]!.uri as string).startsWith('s3://'))
    .map((k) => ({ uri: spec[k]!.uri as string, field: `${k}.uri` }));
}

/**
 * Downloads the s3:// models a spec names into the local cache. Unlike datasets they are fetched again on every
 * prefetch (models are small and get retrained under the same name); model.json is written last.
 */
async function prefetchModels(raw: unknown, env: NodeJS.ProcessEnv): Promise<void> {
  for (const { uri, field } of modelUris(raw)) {
    const { dir, file } = splitModelUri(uri);
    try {
      await copyModel(openStore(dir, env), file, new FsStore(cachedModelDir(uri, env)));
    } catch (err) {
      if (err instanceof ModelFileError || err instanceof StoreError) throw new SpecError(field, err.message);
      throw err;
    }
  }
}

/** Every dataset uri of a spec (study dataset and the denoisers' own). */
function datasetUris(raw: unknown): { uri: string; field: string }[] {
  const out: { uri: string; field: string }[] = [];
  const spec = raw as Record<string, { uri?: unknown; dataset?: { uri?: unknown } } | undefined>;
  if (typeof spec?.dataset?.uri === 'string') out.push({ uri: spec.dataset.uri, field: 'dataset.uri' });
  for (const k of ['denoiser', 'compare']) {
    const u = spec?.[k]?.dataset?.uri;
    if (typeof u === 'string') out.push({ uri: u, field: `${k}.dataset.uri` });
  }
  return out;
}

/** Downloads the s3:// dataset files (if not cached yet) and models a spec names. Invalid specs are left to the resolver. */
export async function prefetchRemoteData(specText: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let raw: unknown;
  try {
    raw = parseYaml(specText);
  } catch {
    return;
  }
  for (const { uri, field } of datasetUris(raw)) {
    if (!uri.startsWith('s3://')) continue;
    const path = cachedPath(uri, env);
    if (existsSync(path)) continue;
    const slash = uri.indexOf('/', 5);
    if (slash < 0) throw new SpecError(field, `${uri} names a bucket but no object key`);
    const store = openStore(uri.slice(0, slash), env);
    let bytes: Uint8Array;
    try {
      bytes = await store.get(uri.slice(slash + 1));
    } catch (err) {
      throw new SpecError(field, (err as Error).message);
    }
    mkdirSync(dataCacheDir(env), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  }
  await prefetchModels(raw, env);
}
