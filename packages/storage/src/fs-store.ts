import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { checkKey, StoreError, type ObjectStore } from './store.js';

/** Objects as files under a local directory. Writes go to a temporary file in the same directory, then rename. */
export class FsStore implements ObjectStore {
  readonly root: string;
  private readonly dir: string;

  constructor(root: string) {
    this.root = root;
    this.dir = resolve(root);
  }

  locate(key: string): string {
    checkKey(key);
    return join(this.dir, ...key.split('/'));
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    const path = this.locate(key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(body);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw new StoreError(path, `write failed (${(err as Error).message})`);
    }
  }

  async get(key: string): Promise<Uint8Array> {
    const path = this.locate(key);
    try {
      return new Uint8Array(await readFile(path));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new StoreError(path, code === 'ENOENT' ? 'object not found' : `read failed (${code ?? (err as Error).message})`);
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      return (await stat(this.locate(key))).isFile();
    } catch {
      return false;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = join(this.dir, ...prefix.split('/').filter(Boolean));
    const out: string[] = [];
    const walk = async (d: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile() && !e.name.includes('.tmp-')) out.push(relative(this.dir, p).split(sep).join('/'));
      }
    };
    await walk(base);
    return out.sort();
  }
}
