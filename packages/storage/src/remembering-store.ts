import type { ObjectStore } from './store.js';

/** Options of RememberingStore. */
export interface RememberOptions {
  /**
   * Bytes of objects kept in memory at most; once full, further objects are not kept (the first ones stay, so a reader
   * that goes over the objects in the same order as before finds the first part in memory). @defaultValue 128 MiB
   */
  maxBytes?: number;
  /** Which keys are kept. @defaultValue every key */
  keep?: (key: string) => boolean;
}

/**
 * An ObjectStore in front of another that keeps in memory the objects it read or wrote, so that a second reader in the
 * same task gets them without a request: the aggregation reads every shard's samples and writes the summary, then the
 * report reads them again (over S3 one round trip and one request to the server per object). Meant for one task over
 * objects nobody else changes meanwhile (a finished study's shards): it never checks the store for newer versions.
 */
export class RememberingStore implements ObjectStore {
  readonly root: string;
  private readonly objects = new Map<string, Uint8Array>();
  private bytes = 0;
  private readonly maxBytes: number;
  private readonly keep: (key: string) => boolean;

  constructor(
    private readonly store: ObjectStore,
    opts: RememberOptions = {},
  ) {
    this.root = store.root;
    this.maxBytes = opts.maxBytes ?? 128 * 2 ** 20;
    this.keep = opts.keep ?? (() => true);
  }

  /** Bytes held in memory. */
  get heldBytes(): number {
    return this.bytes;
  }

  private remember(key: string, body: Uint8Array): void {
    if (!this.keep(key)) return;
    const previous = this.objects.get(key);
    const size = this.bytes - (previous?.length ?? 0) + body.length;
    if (size > this.maxBytes) {
      // an object that no longer fits must not be answered from an older copy
      if (previous) this.forget(key);
      return;
    }
    this.objects.set(key, body);
    this.bytes = size;
  }

  private forget(key: string): void {
    const previous = this.objects.get(key);
    if (!previous) return;
    this.objects.delete(key);
    this.bytes -= previous.length;
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    // forgotten first: while the write is under way a reader gets the store's answer, never the superseded copy
    this.forget(key);
    await this.store.put(key, body);
    this.remember(key, body);
  }

  async get(key: string): Promise<Uint8Array> {
    const held = this.objects.get(key);
    if (held) return held;
    const body = await this.store.get(key);
    this.remember(key, body);
    return body;
  }

  async exists(key: string): Promise<boolean> {
    return this.objects.has(key) || this.store.exists(key);
  }

  list(prefix: string): Promise<string[]> {
    return this.store.list(prefix);
  }

  locate(key: string): string {
    return this.store.locate(key);
  }
}
