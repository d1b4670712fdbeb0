import { gaussianDataset, gmmDataset, loadIdxFile, ringsDataset, swissRollDataset, twoMoonsDataset, type Dataset } from '@trajlab/datasets';
import { isAbsolute, resolve } from 'node:path';
import { SpecError } from './errors.js';
import type { DatasetSpec } from './spec.js';

/** Resolves a dataset uri against the spec file's directory; remote schemes are refused with a clear message. */
export function datasetPath(uri: string, baseDir: string, field: string): string {
  if (uri.startsWith('s3://')) throw new SpecError(field, `S3 datasets (${uri}) need the S3 store of the distributed pipeline, not in this build yet; use a local path`);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  if (scheme) throw new SpecError(field, `unsupported URI scheme '${scheme[1]}://' in ${uri}`);
  return isAbsolute(uri) ? uri : resolve(baseDir, uri);
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
      return loadIdxFile(datasetPath(spec.uri, baseDir, `${field}.uri`), { limit: spec.limit });
  }
}
