import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeCacheFile } from './cache-file.js';
import { datasetContentHash } from './hash.js';
import { fileMapper, nativeChecksum, type Checksummer, type FileMapper } from './map-file.js';
import type { Dataset } from './types.js';

/**
 * A decoded copy of an IDX file: gunzip and decoding take ~0.25 s for 10k Fashion-MNIST images and ~0.55 s for all
 * 60k, in every process that loads them (each `trajlab run` and each of its shard processes, each worker). The copy
 * is the float32 points behind a small JSON header, named by the source file's identity (absolute path, size,
 * modification and change times, inode) and the item limit, so an edited file is decoded again. The header holds the
 * content hash (which the study id needs), so a command that needs only the id (`validate`, `submit`) reads the header
 * alone; the points are read when first used and checked, so a damaged copy is never used: it is decoded again from
 * the file. The check is the points' XXH64 written beside them (the native binding of map-file.ts: ~5 ms for the
 * 31 MB of Fashion-MNIST 10k, against ~30 ms for their sha256 on a 2-core VM, in every process that loads them), or
 * their sha256 against the content hash where the binding is missing, now or when the copy was written. The points
 * start on a page boundary: where the file-mapping binding is built (map-file.ts) they are mapped rather than read. A
 * copy is always written whole to a temporary file and renamed into place, never rewritten in place, so a mapping made
 * by another process keeps the content it checked.
 */

/**
 * Bumped when the layout changes (2: the points start at a multiple of POINTS_ALIGNMENT; 3: the header may hold the
 * points' XXH64).
 */
const FORMAT = 3;

/** The points' byte offset in a copy is a multiple of this (a page), so that a mapping of the file can view them. */
export const POINTS_ALIGNMENT = 4096;

export interface Header {
  format: number;
  n: number;
  dim: number;
  contentHash: string;
  /** XXH64 of the points' bytes (16 hex digits), when the binding was there to compute it. */
  pointsChecksum?: string;
  image?: Dataset['image'];
  source: string;
}

/**
 * The decoded copy's file for `path` with this limit, or null when the file cannot be stat'ed (the loader reports
 * that). Taken once per load, before the file is read, so a copy is never filed under a newer version's identity.
 */
export function decodedCopyPath(path: string, limit: number | undefined, dir: string): string | null {
  let st;
  try {
    st = statSync(path, { bigint: true });
  } catch {
    return null;
  }
  const identity = JSON.stringify([FORMAT, resolve(path), String(st.size), String(st.mtimeNs), String(st.ctimeNs), String(st.ino), limit ?? null]);
  return join(dir, `idx-${createHash('sha256').update(identity).digest('hex').slice(0, 32)}.f32`);
}

/** A decoded copy's header, and where its points start. */
export interface DecodedCopy {
  file: string;
  header: Header;
  /** Byte offset of the points. */
  offset: number;
}

/**
 * The header of the decoded copy `file`, or null when there is none or it does not check out (format, and a size that
 * matches n x dim float32 points). The points are not read: see readDecodedPoints.
 */
export function readDecodedHeader(file: string): DecodedCopy | null {
  return withOpenFile(file, (fd) => {
    const size = fstatSync(fd).size;
    const lengthField = Buffer.alloc(4);
    if (size < 4 || readSync(fd, lengthField, 0, 4, 0) !== 4) return null;
    const headerLength = lengthField.readUInt32LE(0);
    if (headerLength > size - 4) return null;
    const json = Buffer.alloc(headerLength);
    if (readSync(fd, json, 0, headerLength, 4) !== headerLength) return null;
    const header = JSON.parse(json.toString('utf8')) as Header;
    const offset = 4 + headerLength;
    const valid =
      header.format === FORMAT &&
      Number.isInteger(header.n) &&
      Number.isInteger(header.dim) &&
      typeof header.contentHash === 'string' &&
      (header.pointsChecksum === undefined || typeof header.pointsChecksum === 'string');
    if (!valid || size !== offset + 4 * header.n * header.dim) return null;
    return { file, header, offset };
  });
}

/**
 * A decoded copy's points, or null when they cannot be read or fail their check (a damaged copy is never used): their
 * XXH64 against the header's `pointsChecksum` when both the header and this process have one, else their sha256
 * against the content hash. With the file-mapping binding (map-file.ts) they are a view of the mapped file, private
 * and copy-on-write; otherwise they are read straight into their (aligned) Float32Array: no intermediate buffer of the
 * whole file, which would be a second copy of the training set in fresh memory (~30 MB for 10k Fashion-MNIST images,
 * ~190 MB for all 60k). `mapper`: @defaultValue fileMapper() (null: read). `checksum`: @defaultValue nativeChecksum()
 * (null: always the sha256)
 */
export function readDecodedPoints(copy: DecodedCopy, mapper: FileMapper | null = fileMapper(), checksum: Checksummer | null = nativeChecksum()): Float32Array | null {
  const { header } = copy;
  const count = header.n * header.dim;
  const checked = (points: Float32Array) => {
    const intact = checksum && header.pointsChecksum !== undefined ? checksum(points) === header.pointsChecksum : datasetContentHash(points, header.n, header.dim) === header.contentHash;
    return intact ? points : null;
  };
  if (mapper && copy.offset % Float32Array.BYTES_PER_ELEMENT === 0) {
    let mapped: ArrayBuffer | null = null;
    try {
      mapped = mapper(copy.file);
    } catch {
      // not mappable (a file system without mmap, say): read below
    }
    if (mapped) return mapped.byteLength === copy.offset + 4 * count ? checked(new Float32Array(mapped, copy.offset, count)) : null;
  }
  return withOpenFile(copy.file, (fd) => {
    const points = new Float32Array(count);
    if (fstatSync(fd).size !== copy.offset + points.byteLength || !readFully(fd, new Uint8Array(points.buffer), copy.offset)) return null;
    return checked(points);
  });
}

/** `read` applied to `file` opened for reading, closed afterwards; null when it cannot be opened or `read` throws. */
function withOpenFile<T>(file: string, read: (fd: number) => T | null): T | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    return read(fd);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** A dataset's fields from a decoded copy's header, all but the points. */
export function datasetFields(header: Header): Omit<Dataset, 'points'> {
  return { kind: 'idx', dim: header.dim, n: header.n, contentHash: header.contentHash, source: header.source, ...(header.image ? { image: header.image } : {}) };
}

/** Fills `into` from `fd` starting at byte `position`; false if the file ends first. */
function readFully(fd: number, into: Uint8Array, position: number): boolean {
  for (let done = 0; done < into.length; ) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/** Keeps a decoded copy of `data` in `file` for the next load (best effort: a cache that cannot be written is skipped). */
export function writeDecodedIdx(file: string, data: Dataset): void {
  const checksum = nativeChecksum();
  const header: Header = { format: FORMAT, n: data.n, dim: data.dim, contentHash: data.contentHash, ...(checksum ? { pointsChecksum: checksum(data.points) } : {}), image: data.image, source: data.source };
  const text = JSON.stringify(header);
  // spaces after the JSON (which JSON.parse ignores) put the points at a multiple of POINTS_ALIGNMENT
  const unpadded = 4 + Buffer.byteLength(text, 'utf8');
  const json = Buffer.from(text + ' '.repeat((POINTS_ALIGNMENT - (unpadded % POINTS_ALIGNMENT)) % POINTS_ALIGNMENT), 'utf8');
  const lengthField = Buffer.alloc(4);
  lengthField.writeUInt32LE(json.length);
  writeCacheFile(file, [lengthField, json, new Uint8Array(data.points.buffer, data.points.byteOffset, data.points.byteLength)]);
}
