import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { datasetContentHash } from './hash.js';
import { datasetFields, decodedCopyPath, readDecodedHeader, readDecodedPoints, writeDecodedIdx } from './idx-cache.js';
import type { Dataset } from './types.js';

/** An input file that cannot be used; the message names the file. Exit code 2 at the CLI. */
export class DataFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'DataFileError';
  }
}

const IDX_TYPES: Record<number, { name: string; bytes: number }> = {
  0x08: { name: 'ubyte', bytes: 1 },
  0x09: { name: 'byte', bytes: 1 },
  0x0b: { name: 'short', bytes: 2 },
  0x0c: { name: 'int', bytes: 4 },
  0x0d: { name: 'float', bytes: 4 },
  0x0e: { name: 'double', bytes: 8 },
};

/** Options of the IDX loader. */
export interface IdxOptions {
  /** Use only the first `limit` items. @defaultValue all */
  limit?: number;
  /**
   * Directory where loadIdxFile keeps a decoded copy of the file, so the next load skips gunzip and decoding (see
   * idx-cache.ts; the copy is checked against its content hash). @defaultValue none: the file is decoded every time
   */
  cacheDir?: string;
}

/**
 * Parses an MNIST-format IDX file (raw or gzip): magic 0x0000, type byte, rank byte, big-endian uint32 dimensions,
 * big-endian data. Items are flattened row-major; unsigned-byte pixels are scaled to [-1, 1] as x / 127.5 - 1.
 * `file` is only used in messages.
 */
export function parseIdx(raw: Uint8Array, file: string, opts: IdxOptions = {}): Dataset {
  let buf: Uint8Array = raw;
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      buf = gunzipSync(raw);
    } catch (err) {
      throw new DataFileError(file, `gzip data is corrupt or truncated (${(err as Error).message})`);
    }
  }
  if (buf.length < 4) throw new DataFileError(file, `too short for an IDX header (${buf.length} bytes)`);
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new DataFileError(file, `not an IDX file: magic bytes are ${hex(buf[0]!)} ${hex(buf[1]!)}, expected 00 00`);
  }
  const type = IDX_TYPES[buf[2]!];
  if (!type) throw new DataFileError(file, `unknown IDX element type ${hex(buf[2]!)}`);
  const rank = buf[3]!;
  if (rank < 1) throw new DataFileError(file, 'IDX rank is 0');
  const headerBytes = 4 + 4 * rank;
  if (buf.length < headerBytes) throw new DataFileError(file, `truncated IDX header (${buf.length} bytes, rank ${rank})`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const total = dims[0]!;
  const dim = dims.slice(1).reduce((a, b) => a * b, 1);
  if (dim < 1 || total < 1) throw new DataFileError(file, `IDX dimensions ${dims.join('x')} hold no data`);
  const n = Math.min(total, opts.limit ?? total);
  const expected = headerBytes + total * dim * type.bytes;
  if (buf.length < expected) {
    throw new DataFileError(file, `truncated: header promises ${dims.join('x')} ${type.name} (${expected} bytes), file has ${buf.length}`);
  }
  const points = new Float32Array(n * dim);
  for (let j = 0; j < n * dim; j++) {
    const off = headerBytes + j * type.bytes;
    let v: number;
    switch (buf[2]) {
      case 0x08:
        v = buf[off]! / 127.5 - 1;
        break;
      case 0x09:
        v = view.getInt8(off);
        break;
      case 0x0b:
        v = view.getInt16(off, false);
        break;
      case 0x0c:
        v = view.getInt32(off, false);
        break;
      case 0x0d:
        v = view.getFloat32(off, false);
        break;
      default:
        v = view.getFloat64(off, false);
    }
    if (!Number.isFinite(v)) throw new DataFileError(file, `non-finite value ${v} at item ${Math.floor(j / dim)}, component ${j % dim}`);
    points[j] = v;
  }
  const image = rank === 3 ? { height: dims[1]!, width: dims[2]!, channels: 1 } : rank === 4 ? { height: dims[1]!, width: dims[2]!, channels: dims[3]! } : undefined;
  return {
    kind: 'idx',
    dim,
    n,
    points,
    contentHash: datasetContentHash(points, n, dim),
    image,
    source: `idx ${file} (${dims.join('x')} ${type.name}, first ${n})`,
  };
}

/**
 * Loads an IDX file from the local filesystem. With a decoded copy under `cacheDir`, the dataset comes from its header
 * and its points are read on first use (checked against the header's content hash; a damaged copy is decoded again from
 * the file, whose content must still have that hash); `validate` and `submit`, which need the study id alone, never
 * read them.
 */
export function loadIdxFile(path: string, opts: IdxOptions = {}): Dataset {
  const copyFile = opts.cacheDir ? decodedCopyPath(path, opts.limit, opts.cacheDir) : null;
  const copy = copyFile ? readDecodedHeader(copyFile) : null;
  if (copyFile && copy) {
    let points: Float32Array | null = null;
    const fromSource = (): Float32Array => {
      const data = decodeIdxFile(path, opts);
      if (data.contentHash !== copy.header.contentHash) throw new DataFileError(path, `changed while in use (content hash ${data.contentHash.slice(0, 16)}..., expected ${copy.header.contentHash.slice(0, 16)}...)`);
      writeDecodedIdx(copyFile, data);
      return data.points;
    };
    return {
      ...datasetFields(copy.header),
      get points(): Float32Array {
        points ??= readDecodedPoints(copy) ?? fromSource();
        return points;
      },
    };
  }
  const data = decodeIdxFile(path, opts);
  if (copyFile) writeDecodedIdx(copyFile, data);
  return data;
}

/** Reads and decodes the IDX file at `path` (errors name the file). */
function decodeIdxFile(path: string, opts: IdxOptions): Dataset {
  let raw: Uint8Array;
  try {
    raw = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DataFileError(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? (err as Error).message})`);
  }
  return parseIdx(raw, path, opts);
}

function hex(b: number): string {
  return b.toString(16).padStart(2, '0');
}
