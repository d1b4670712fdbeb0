import { gaussianDataset, gmmDataset, loadIdxFile, ringsDataset, swissRollDataset, twoMoonsDataset, type Dataset } from '@trajlab/datasets';
import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { cachedPath, dataCacheDir } from './remote-data.js';
import { SpecError } from './errors.js';
import type { DatasetSpec } from './spec.js';

/**
 * Resolves an input uri (a dataset file, a model directory): local paths against the spec file's directory and inside
 * TRAJLAB_DATA_ROOT, s3:// to its prefetched local copy (`cached`, default the dataset cache path of the uri).
 */
export function datasetPath(uri: string, baseDir: string, field: string, cached?: string): string {
  if (uri.startsWith('s3://')) {
    const path = cached ?? cachedPath(uri);
    if (!existsSync(path)) throw new SpecError(field, `${uri} has not been downloaded (prefetchRemoteData runs before resolution)`);
    return path;
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  if (scheme) throw new SpecError(field, `unsupported URI scheme '${scheme[1]}://' in ${uri}`);
  const path = isAbsolute(uri) ? uri : resolve(baseDir, uri);
  confineToDataRoot(path, field);
  return path;
}

/**
 * With TRAJLAB_DATA_ROOT set (workers serving many users should set it), local dataset files must lie inside that
 * directory, symbolic links resolved; anything else is refused before it is opened.
 */
export function confineToDataRoot(path: string, field: string, env: NodeJS.ProcessEnv = process.env): void {
  const root = env.TRAJLAB_DATA_ROOT;
  if (!root) return;
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  const r = real(root);
  const p = real(path);
  if (p !== r && !p.startsWith(r.endsWith(sep) ? r : r + sep)) {
    throw new SpecError(field, `${path} is outside the data root ${root} (TRAJLAB_DATA_ROOT)`);
  }
}

/** Builds or loads a dataset from its spec. File errors name the file (DataFileError). */
export function loadDataset(spec: DatasetSpec, baseDir: string, field: string): Dataset {
  switch (spec.kind) {
    case 'gmm':
      return gmmDataset(spec);
    case 'gaussian':
      return gaussianDataset(spec);
    case 'two-moons':
      return twoMoonsDataset(spec);
    case 'swiss-roll':
      return swissRollDataset(spec);
    case 'rings':
      return ringsDataset(spec);
    case 'idx':
      // a decoded copy is kept next to the downloaded files, so later runs and shard processes skip decoding
      return loadIdxFile(datasetPath(spec.uri, baseDir, `${field}.uri`), { limit: spec.limit, cacheDir: join(dataCacheDir(), 'decoded') });
  }
}
