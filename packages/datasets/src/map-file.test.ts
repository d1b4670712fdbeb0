import { mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodedCopyPath, POINTS_ALIGNMENT, readDecodedHeader, readDecodedPoints } from './idx-cache.js';
import { loadIdxFile } from './idx.js';
import { fileMapper } from './map-file.js';

// CI has a C compiler and Node's headers at `pnpm install`, so there the binding must exist; on a machine without them
// the mapping tests are skipped and decoded copies are read.
const mapper = fileMapper();
if (process.env.CI && !mapper) throw new Error('CI expects the file-mapping binding (packages/datasets/native/build/trajlab_map_file.node)');

/** An IDX file of `n` float32 vectors of `dim` values (big-endian, as IDX stores them), gzipped, in a fresh directory. */
function idxFile(n: number, dim: number) {
  const dir = mkdtempSync(join(tmpdir(), 'map-file-'));
  const bytes = Buffer.alloc(12 + 4 * n * dim);
  bytes.set([0, 0, 0x0d, 2]);
  bytes.writeUInt32BE(n, 4);
  bytes.writeUInt32BE(dim, 8);
  for (let j = 0; j < n * dim; j++) bytes.writeFloatBE(Math.sin(j * 0.37) * (1 + (j % 7)), 12 + 4 * j);
  const file = join(dir, 'vectors-idx2-float');
  writeFileSync(file, gzipSync(bytes));
  return { file, cacheDir: join(dir, 'cache') };
}

describe('decoded copies and file mapping', () => {
  it('start the points on a page boundary, whatever the header length', () => {
    for (const [n, dim] of [
      [3, 5],
      [1000, 33],
    ] as const) {
      const { file, cacheDir } = idxFile(n, dim);
      loadIdxFile(file, { cacheDir }).points;
      const copy = readDecodedHeader(decodedCopyPath(file, undefined, cacheDir)!)!;
      expect(copy.offset % POINTS_ALIGNMENT).toBe(0);
      expect(statSync(copy.file).size).toBe(copy.offset + 4 * n * dim);
    }
  });
});

describe.skipIf(!mapper)('mapped decoded copies', () => {
  const map = mapper!;

  it('come from a mapper that refuses what is not a file it can map, naming it', () => {
    expect(() => map(join(tmpdir(), 'no-such-file-for-trajlab'))).toThrow(/cannot open .*no-such-file-for-trajlab: No such file/);
    const empty = join(mkdtempSync(join(tmpdir(), 'map-file-')), 'empty');
    writeFileSync(empty, '');
    expect(() => map(empty)).toThrow(/cannot map .*empty/);
  });

  it('give the points that reading gives, as a view of the whole file', () => {
    const { file, cacheDir } = idxFile(1000, 33);
    const decoded = loadIdxFile(file);
    loadIdxFile(file, { cacheDir }).points; // writes the copy
    const copy = readDecodedHeader(decodedCopyPath(file, undefined, cacheDir)!)!;
    const mapped = readDecodedPoints(copy, map)!;
    const read = readDecodedPoints(copy, null)!;
    expect(mapped.buffer.byteLength).toBe(statSync(copy.file).size);
    expect(mapped.byteOffset).toBe(copy.offset);
    expect(Array.from(mapped)).toEqual(Array.from(decoded.points));
    expect(Array.from(read)).toEqual(Array.from(decoded.points));
    // loading uses the mapping unless TRAJLAB_MAP_FILES=off
    expect(loadIdxFile(file, { cacheDir }).points.buffer.byteLength).toBe(statSync(copy.file).size);
    expect(fileMapper({ TRAJLAB_MAP_FILES: 'off' })).toBeNull();
  });

  it('are private: a write changes neither the file nor another mapping', () => {
    const { file, cacheDir } = idxFile(50, 8);
    const points = loadIdxFile(file, { cacheDir }).points;
    const copyFile = decodedCopyPath(file, undefined, cacheDir)!;
    const before = readFileSync(copyFile);
    const original = points[7]!;
    points[7] = 12345;
    expect(points[7]).toBe(12345);
    expect(readFileSync(copyFile).equals(before)).toBe(true);
    expect(loadIdxFile(file, { cacheDir }).points[7]).toBe(original);
  });

  it('are never served damaged: a mapped copy that fails its hash is decoded again', () => {
    const { file, cacheDir } = idxFile(50, 8);
    const expected = Array.from(loadIdxFile(file).points);
    loadIdxFile(file, { cacheDir }).points;
    const copyFile = decodedCopyPath(file, undefined, cacheDir)!;
    const damaged = readFileSync(copyFile);
    damaged[damaged.length - 2] = damaged[damaged.length - 2]! ^ 0x40;
    writeFileSync(`${copyFile}.new`, damaged);
    // replaced by rename, as trajlab itself replaces copies
    renameSync(`${copyFile}.new`, copyFile);
    const copy = readDecodedHeader(copyFile)!;
    expect(readDecodedPoints(copy, map)).toBeNull();
    expect(Array.from(loadIdxFile(file, { cacheDir }).points)).toEqual(expected);
    expect(readDecodedPoints(readDecodedHeader(copyFile)!, map)).not.toBeNull();
  });
});
