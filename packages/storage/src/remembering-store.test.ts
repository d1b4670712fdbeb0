import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsStore } from './fs-store.js';
import { RememberingStore } from './remembering-store.js';
import { StoreError } from './store.js';

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

/** A directory store and the path of its objects, so a test can remove an object behind the remembering store's back. */
function directoryStore() {
  const dir = mkdtempSync(join(tmpdir(), 'trajlab-remember-'));
  return { fs: new FsStore(dir), path: (key: string) => join(dir, key), dir };
}

describe('RememberingStore: objects read or written once are answered from memory', () => {
  it('answers a second get of an object it read or wrote without the store, and only for the keys it keeps', async () => {
    const { fs, path, dir } = directoryStore();
    await fs.put('a/read.samples.arrow', bytes(10, 1));
    await fs.put('a/read.steps.arrow', bytes(10, 2));
    const store = new RememberingStore(fs, { keep: (k) => !k.endsWith('.steps.arrow') });
    expect(await store.get('a/read.samples.arrow')).toEqual(bytes(10, 1));
    expect(await store.get('a/read.steps.arrow')).toEqual(bytes(10, 2));
    await store.put('a/written.json', bytes(5, 3));
    // gone from the directory: only the remembered ones are still answered
    rmSync(path('a/read.samples.arrow'));
    rmSync(path('a/read.steps.arrow'));
    rmSync(path('a/written.json'));
    expect(await store.get('a/read.samples.arrow')).toEqual(bytes(10, 1));
    expect(await store.get('a/written.json')).toEqual(bytes(5, 3));
    expect(await store.exists('a/written.json')).toBe(true);
    await expect(store.get('a/read.steps.arrow')).rejects.toThrow(StoreError);
    expect(await store.exists('a/read.steps.arrow')).toBe(false);
    expect(store.heldBytes).toBe(15);
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps objects up to maxBytes, the first ones first, and never answers with a copy a put superseded', async () => {
    const { fs, path, dir } = directoryStore();
    const store = new RememberingStore(fs, { maxBytes: 25 });
    for (const k of ['k1', 'k2', 'k3']) await store.put(k, bytes(10, Number(k[1])));
    expect(store.heldBytes).toBe(20);
    for (const k of ['k1', 'k2', 'k3']) rmSync(path(k));
    expect(await store.get('k1')).toEqual(bytes(10, 1));
    expect(await store.get('k2')).toEqual(bytes(10, 2));
    await expect(store.get('k3')).rejects.toThrow(StoreError);
    // a new version that fits replaces the old one; one that does not fit is read from the store from then on
    await store.put('k1', bytes(12, 7));
    expect(await store.get('k1')).toEqual(bytes(12, 7));
    await store.put('k2', bytes(30, 8));
    expect(store.heldBytes).toBe(12);
    expect(await store.get('k2')).toEqual(bytes(30, 8));
    rmSync(path('k2'));
    await expect(store.get('k2')).rejects.toThrow(StoreError);
    rmSync(dir, { recursive: true, force: true });
  });
});
