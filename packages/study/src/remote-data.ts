import { copyModel, ModelFileError, splitModelUri } from '@trajlab/models';
import { FsStore, openStore, StoreError } from '@trajlab/storage';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SpecError } from './errors.js';

/**
 * Dataset files named by s3://bucket/key are downloaded once into a local cache (TRAJLAB_DATA_CACHE, default
 * <tmpdir>/trajlab-data-cache) before a spec is resolved; resolution then reads the cached copy. The uri as written stays
 * in the spec (and the study id); the dataset's content hash is what guarantees every process reads the same data.
 */
export function dataCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.TRAJLAB_DATA_CACHE || join(tmpdir(), 'trajlab-data-cache');
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
