import { createHash } from 'node:crypto';

/** sha256 of (dim, n, float32 data): the identity of a training set, independent of where it came from. */
export function datasetContentHash(points: Float32Array, n: number, dim: number): string {
  const h = createHash('sha256');
  h.update(`trajlab-dataset-v1 n=${n} dim=${dim}\n`);
  h.update(new Uint8Array(points.buffer, points.byteOffset, points.byteLength));
  return h.digest('hex');
}
