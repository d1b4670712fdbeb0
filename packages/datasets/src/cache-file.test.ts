import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeCacheFile } from './cache-file.js';

describe('writeCacheFile', () => {
  it('writes its parts one after the other as the whole file, views by their own bytes, replacing what was there', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cache-file-'));
    const file = join(dir, 'sub', 'a.f32');
    const wide = Uint8Array.from({ length: 40 }, (_, i) => i);
    expect(writeCacheFile(file, [Buffer.from('head\n'), new Uint8Array(wide.buffer, 8, 16), new Uint8Array(0)])).toBe(true);
    expect(Array.from(readFileSync(file))).toEqual([...Buffer.from('head\n'), ...wide.subarray(8, 24)]);
    expect(writeCacheFile(file, [Buffer.from('again')])).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('again');
    expect(readdirSync(join(dir, 'sub'))).toEqual(['a.f32']); // no temporary file left
  });

  it('reports a cache it cannot write with false, and leaves nothing behind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cache-file-'));
    writeFileSync(join(dir, 'not-a-dir'), 'x');
    expect(writeCacheFile(join(dir, 'not-a-dir', 'a.f32'), [Buffer.from('data')])).toBe(false);
    // a directory in the file's place: the write fails at the rename, and its temporary file is removed
    expect(writeCacheFile(dir, [Buffer.from('data')])).toBe(false);
    expect(readdirSync(join(dir, '..')).filter((f) => f.startsWith(`${dir.split('/').pop()}.tmp-`))).toEqual([]);
  });
});
