/**
 * Files mapped into memory (native/map_file.c, built at install): a decoded dataset copy is used where the page cache
 * holds it instead of being read into fresh memory, which costs a page fault per 4 KB page (~0.1 s for the 31 MB of
 * Fashion-MNIST 10k on a VM whose fresh pages are slow) in every process that loads it. Processes on one machine share
 * the mapped pages. TRAJLAB_MAP_FILES=off reads files instead. The same binding checksums bytes with XXH64, which
 * checks a decoded copy's points in a few milliseconds (idx-cache.ts).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Where the binding is built (by scripts/build-native.mjs). */
export const MAP_FILE_BINDING_PATH = fileURLToPath(new URL('../native/build/trajlab_map_file.node', import.meta.url));

/** Maps a whole file, private and copy-on-write: writes to the buffer never reach the file. Throws naming the file. */
export type FileMapper = (path: string) => ArrayBuffer;

/** XXH64 (seed 0) of a typed array's bytes, as 16 hex digits. */
export type Checksummer = (bytes: ArrayBufferView) => string;

interface Binding {
  mapFile: FileMapper | null;
  checksum: Checksummer | null;
}

let loaded: Binding | undefined;

/**
 * The binding's functions, each null where the binding is not built (no C compiler at install, or Windows), cannot be
 * loaded, or is older than the function. Loaded once per process.
 */
function binding(): Binding {
  if (loaded) return loaded;
  loaded = { mapFile: null, checksum: null };
  if (existsSync(MAP_FILE_BINDING_PATH)) {
    try {
      const b = createRequire(import.meta.url)(MAP_FILE_BINDING_PATH) as { mapFile?: unknown; checksum?: unknown };
      if (typeof b.mapFile === 'function') loaded.mapFile = b.mapFile as FileMapper;
      if (typeof b.checksum === 'function') loaded.checksum = b.checksum as Checksummer;
    } catch {
      // an unloadable binding (built for another Node, say): files are read, and checked by their sha256
    }
  }
  return loaded;
}

/** The file mapper, or null when files are read instead: TRAJLAB_MAP_FILES=off, or no binding (see binding). */
export function fileMapper(env: NodeJS.ProcessEnv = process.env): FileMapper | null {
  if ((env.TRAJLAB_MAP_FILES ?? '').trim().toLowerCase() === 'off') return null;
  return binding().mapFile;
}

/** The binding's XXH64 checksum, or null without the binding (whatever TRAJLAB_MAP_FILES says). */
export function nativeChecksum(): Checksummer | null {
  return binding().checksum;
}
