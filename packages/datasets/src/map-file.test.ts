import { mkdtempSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodedCopyPath, POINTS_ALIGNMENT, readDecodedHeader, readDecodedPoints } from './idx-cache.js';
import { loadIdxFile } from './idx.js';
import { createRequire } from 'node:module';
import { fileMapper, MAP_FILE_BINDING_PATH, nativeChecksum } from './map-file.js';

// CI has a C compiler and Node's headers at `pnpm install`, so there the binding must exist; on a machine without them
// the mapping tests are skipped and decoded copies are read.
const mapper = fileMapper();
const checksum = nativeChecksum();
if (process.env.CI && !(mapper && checksum)) throw new Error('CI expects the file-mapping binding (packages/datasets/native/build/trajlab_map_file.node)');
/** The binding's mapAscii (used by scripts/cached-bundle.cjs for the JavaScript bundles), where it is built. */
const mapAscii = mapper ? (createRequire(import.meta.url)(MAP_FILE_BINDING_PATH) as { mapAscii: (path: string) => string | null }).mapAscii : null;

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

  it.skipIf(!checksum)('checksum bytes with XXH64: the reference values of xxHash\'s own xxhsum, over a view\'s bytes alone', () => {
    const xxh64 = checksum!;
    // `xxhsum -H1` (xxHash 0.8.1) of the bytes (37 i + 11) mod 256, i < length: every path of the algorithm (no
    // stripe, stripes, and tails of 8-, 4- and 1-byte steps)
    const reference: [number, string][] = [
      [0, 'ef46db3751d8e999'], [1, 'f592c0c7639c4cb6'], [3, '22c08528601d4f27'], [4, 'fb1e5cf2f1ae4d95'],
      [5, '9d213eca1f68f273'], [7, '5613ac510496c04e'], [8, '57cb2b7521f3e21a'], [9, 'c3f1d09775257b66'],
      [31, 'e4a0e629e519a4ae'], [32, 'cc6b8aaada790b2d'], [33, '35ec49850475a832'], [63, 'bf9f0ba3cf95b28a'],
      [64, '155ccce4bf32befc'], [65, 'da5ee441a595cfb8'], [100, '4826e367566ea023'], [1000, '128da10cfbdc59d9'],
    ];
    const pattern = (length: number) => Uint8Array.from({ length }, (_, i) => (37 * i + 11) % 256);
    for (const [length, hex] of reference) expect(xxh64(pattern(length)), `${length} bytes`).toBe(hex);
    expect(xxh64(new TextEncoder().encode('abc'))).toBe('44bc2cf5ad770999');
    // a view is checksummed over its own bytes, whatever its type and offset in its buffer
    const wide = pattern(1000 + 12);
    expect(xxh64(new Float32Array(wide.buffer, 12, 250))).toBe(xxh64(wide.slice(12)));
    // any one flipped bit changes it
    const bytes = pattern(71);
    const base = xxh64(bytes);
    for (let bit = 0; bit < 8 * bytes.length; bit++) {
      const flipped = Uint8Array.from(bytes);
      flipped[bit >> 3] = flipped[bit >> 3]! ^ (1 << (bit & 7));
      expect(xxh64(flipped)).not.toBe(base);
    }
    expect(() => xxh64(new ArrayBuffer(8) as unknown as Uint8Array)).toThrow(/TypedArray/);
  });

  it.skipIf(!mapAscii)('map an ASCII file as a string over its pages, and give null for any other byte', () => {
    const map = mapAscii!;
    const dir = mkdtempSync(join(tmpdir(), 'map-ascii-'));
    const file = join(dir, 'text.cjs');
    // a length that is not a multiple of the eight bytes checked at a time, so the tail is checked too
    const text = Array.from({ length: 40001 }, (_, i) => String.fromCharCode(32 + ((i * 7) % 95))).join('') + '\n';
    writeFileSync(file, text, 'latin1');
    const mapped = map(file)!;
    expect(mapped).toBe(text);
    for (const at of [0, 17, text.length - 1]) {
      const bytes = Buffer.from(text, 'latin1');
      bytes[at] = 0xc3;
      writeFileSync(join(dir, 'other.cjs'), bytes);
      expect(map(join(dir, 'other.cjs')), `byte ${at}`).toBeNull();
    }
    writeFileSync(join(dir, 'empty.cjs'), '');
    expect(map(join(dir, 'empty.cjs'))).toBe('');
    expect(() => map(join(dir, 'missing.cjs'))).toThrow(/cannot open .*missing\.cjs/);
    // a file replaced by a rename (as the build writes bundles) leaves the string mapped before it unchanged
    writeFileSync(join(dir, 'next.cjs'), 'x'.repeat(text.length), 'latin1');
    renameSync(join(dir, 'next.cjs'), file);
    expect(mapped).toBe(text);
    expect(map(file)).toBe('x'.repeat(text.length));
  });

  it.skipIf(!checksum)('are checked by their XXH64 where the binding is, else by their sha256, and a wrong checksum is refused', () => {
    const { file, cacheDir } = idxFile(40, 6);
    const expected = Array.from(loadIdxFile(file).points);
    loadIdxFile(file, { cacheDir }).points;
    const copyFile = decodedCopyPath(file, undefined, cacheDir)!;
    const copy = readDecodedHeader(copyFile)!;
    expect(copy.header.pointsChecksum).toBe(checksum!(new Float32Array(expected)));
    expect(Array.from(readDecodedPoints(copy, mapper, checksum)!)).toEqual(expected);
    // a header whose checksum does not match its (intact) points: refused where the checksum is used, and accepted by
    // the sha256 alone, so the checksum is what decided
    const wrong = { ...copy, header: { ...copy.header, pointsChecksum: '0123456789abcdef' } };
    expect(readDecodedPoints(wrong, mapper, checksum)).toBeNull();
    expect(Array.from(readDecodedPoints(wrong, mapper, null)!)).toEqual(expected);
    // damaged points are refused either way, mapped or read
    const damaged = readFileSync(copyFile);
    damaged[copy.offset + 17] = damaged[copy.offset + 17]! ^ 0x04;
    writeFileSync(`${copyFile}.new`, damaged);
    renameSync(`${copyFile}.new`, copyFile);
    for (const m of [mapper, null]) {
      expect(readDecodedPoints(copy, m, checksum)).toBeNull();
      expect(readDecodedPoints(copy, m, null)).toBeNull();
    }
    // decoded again and rewritten on the next load
    expect(Array.from(loadIdxFile(file, { cacheDir }).points)).toEqual(expected);
    // a copy written without the binding has no checksum: checked by its sha256
    const rewritten = readDecodedHeader(copyFile)!;
    const plain = { ...rewritten, header: { ...rewritten.header, pointsChecksum: undefined } };
    expect(Array.from(readDecodedPoints(plain, mapper, checksum)!)).toEqual(expected);
    expect(readDecodedPoints({ ...plain, header: { ...plain.header, contentHash: '0'.repeat(64) } }, mapper, checksum)).toBeNull();
  });
});
