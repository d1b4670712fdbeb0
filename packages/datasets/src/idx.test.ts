import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DataFileError, loadIdxFile, parseIdx } from './idx.js';
import { datasetContentHash } from './hash.js';

/** A 3 x 2 x 2 unsigned-byte IDX file (three 2x2 images). */
function idxBytes(values: number[], dims = [3, 2, 2]): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  header.set([0, 0, 0x08, dims.length]);
  const view = new DataView(header.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  return new Uint8Array([...header, ...values]);
}
const pixels = [0, 255, 127, 128, 10, 20, 30, 40, 255, 255, 0, 0];

describe('IDX loader', () => {
  it('reads raw and gzip files alike, scales pixels to [-1, 1] and records image shape and hash', () => {
    const dir = mkdtempSync(join(tmpdir(), 'idx-'));
    writeFileSync(join(dir, 'raw-idx3-ubyte'), idxBytes(pixels));
    writeFileSync(join(dir, 'gz-idx3-ubyte.gz'), gzipSync(idxBytes(pixels)));
    const raw = loadIdxFile(join(dir, 'raw-idx3-ubyte'));
    const gz = loadIdxFile(join(dir, 'gz-idx3-ubyte.gz'));
    expect(raw.n).toBe(3);
    expect(raw.dim).toBe(4);
    expect(raw.image).toEqual({ height: 2, width: 2, channels: 1 });
    expect(raw.points[0]).toBe(-1);
    expect(raw.points[1]).toBe(1);
    expect(raw.points[2]).toBeCloseTo(127 / 127.5 - 1, 7);
    expect(Array.from(gz.points)).toEqual(Array.from(raw.points));
    expect(gz.contentHash).toBe(raw.contentHash);
    expect(raw.contentHash).toBe(datasetContentHash(raw.points, 3, 4));
  });

  it('honours limit (and the hash follows the data used)', () => {
    const full = parseIdx(idxBytes(pixels), 'f');
    const two = parseIdx(idxBytes(pixels), 'f', { limit: 2 });
    expect(two.n).toBe(2);
    expect(Array.from(two.points)).toEqual(Array.from(full.points.subarray(0, 8)));
    expect(two.contentHash).not.toBe(full.contentHash);
  });

  it('rejects wrong magic, truncated data, corrupt gzip and unknown types, naming the file', () => {
    const bad = idxBytes(pixels);
    bad[0] = 0x42;
    expect(() => parseIdx(bad, 'magic.idx')).toThrow(/magic\.idx: not an IDX file/);
    expect(() => parseIdx(idxBytes(pixels).subarray(0, 20), 'short.idx')).toThrow(/short\.idx: truncated: header promises 3x2x2 ubyte/);
    expect(() => parseIdx(gzipSync(idxBytes(pixels)).subarray(0, 30), 'cut.gz')).toThrow(/cut\.gz: gzip data is corrupt or truncated/);
    const unknown = idxBytes(pixels);
    unknown[2] = 0x42;
    expect(() => parseIdx(unknown, 'type.idx')).toThrow(DataFileError);
    expect(() => loadIdxFile('/nonexistent/file.idx')).toThrow(/\/nonexistent\/file\.idx: file not found/);
  });

  it('rejects non-finite float data', () => {
    const header = new Uint8Array([0, 0, 0x0d, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
    const body = new Uint8Array(8);
    new DataView(body.buffer).setFloat32(0, 1, false);
    new DataView(body.buffer).setFloat32(4, Number.NaN, false);
    expect(() => parseIdx(new Uint8Array([...header, ...body]), 'nan.idx')).toThrow(/nan\.idx: non-finite value NaN at item 0, component 1/);
  });

  describe('decoded copy (cacheDir)', () => {
    const setUp = () => {
      const dir = mkdtempSync(join(tmpdir(), 'idx-cache-'));
      const file = join(dir, 'data-idx3-ubyte.gz');
      writeFileSync(file, gzipSync(idxBytes(pixels)));
      return { file, cacheDir: join(dir, 'cache') };
    };
    const copies = (cacheDir: string) => readdirSync(cacheDir).filter((f) => f.endsWith('.f32'));

    it('gives the same dataset as decoding, per limit, from one copy each', () => {
      const { file, cacheDir } = setUp();
      const decoded = loadIdxFile(file);
      const first = loadIdxFile(file, { cacheDir });
      expect(copies(cacheDir)).toHaveLength(1);
      const second = loadIdxFile(file, { cacheDir });
      for (const d of [first, second]) {
        expect(Array.from(d.points)).toEqual(Array.from(decoded.points));
        expect({ ...d, points: null }).toEqual({ ...decoded, points: null });
      }
      const limited = loadIdxFile(file, { cacheDir, limit: 2 });
      expect(limited.n).toBe(2);
      expect(loadIdxFile(file, { cacheDir, limit: 2 }).contentHash).toBe(parseIdx(idxBytes(pixels), file, { limit: 2 }).contentHash);
      expect(copies(cacheDir)).toHaveLength(2);
    });

    it('never serves a damaged copy: the points are checked against the stored hash and decoded again', () => {
      const { file, cacheDir } = setUp();
      // a copy of the points: a mapped copy (map-file.ts) shows the file, which this test rewrites in place
      const good = Array.from(loadIdxFile(file, { cacheDir }).points);
      const copy = join(cacheDir, copies(cacheDir)[0]!);
      const bytes = readFileSync(copy);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff; // one float of the data
      writeFileSync(copy, bytes);
      const again = loadIdxFile(file, { cacheDir });
      expect(Array.from(again.points)).toEqual(good);
      expect(again.contentHash).toBe(loadIdxFile(file).contentHash);
      expect(readFileSync(copy).equals(bytes)).toBe(false); // rewritten
      for (const damaged of [
        bytes.subarray(0, 10), // truncated inside the header
        bytes.subarray(0, bytes.length - 4), // one float short
        Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0x7f]), bytes.subarray(4)]), // a header length past the end
      ]) {
        writeFileSync(copy, damaged);
        expect(Array.from(loadIdxFile(file, { cacheDir }).points)).toEqual(good);
        expect(readFileSync(copy).length).toBe(bytes.length); // decoded and written again
      }
    });

    it('reads a copy\'s points only when they are first used, and checks them then', () => {
      const { file, cacheDir } = setUp();
      const good = loadIdxFile(file, { cacheDir });
      const expected = Array.from(good.points);
      const copy = join(cacheDir, copies(cacheDir)[0]!);
      const bytes = readFileSync(copy);
      const damaged = Buffer.from(bytes);
      damaged[damaged.length - 1] = damaged[damaged.length - 1]! ^ 0xff;
      writeFileSync(copy, damaged);
      // what the study id needs comes from the header: the points are not read, so the damage is not even seen
      const lazy = loadIdxFile(file, { cacheDir });
      expect({ n: lazy.n, dim: lazy.dim, contentHash: lazy.contentHash }).toEqual({ n: good.n, dim: good.dim, contentHash: good.contentHash });
      expect(readFileSync(copy).equals(damaged)).toBe(true);
      // first use: the damage is found, the file decoded again and the copy rewritten
      expect(Array.from(lazy.points)).toEqual(expected);
      expect(readFileSync(copy).equals(bytes)).toBe(true);
      // damaged again with the file gone: the first use names the file
      writeFileSync(copy, damaged);
      const orphan = loadIdxFile(file, { cacheDir });
      rmSync(file);
      expect(() => orphan.points).toThrow(/file not found/);
    });

    it('decodes a file again when it changes, and still loads when the cache cannot be written', () => {
      const { file, cacheDir } = setUp();
      const before = loadIdxFile(file, { cacheDir });
      const changed = [...pixels].reverse();
      writeFileSync(file, gzipSync(idxBytes(changed)));
      utimesSync(file, new Date(0), new Date(0)); // even with an old modification time: size, ctime and inode still count
      const after = loadIdxFile(file, { cacheDir });
      expect(after.contentHash).toBe(parseIdx(idxBytes(changed), file).contentHash);
      expect(after.contentHash).not.toBe(before.contentHash);
      const readOnly = join(tmpdir(), `idx-ro-${process.pid}`);
      writeFileSync(readOnly, ''); // a file where the cache directory should be: nothing can be written under it
      expect(loadIdxFile(file, { cacheDir: join(readOnly, 'cache') }).contentHash).toBe(after.contentHash);
    });
  });
});
