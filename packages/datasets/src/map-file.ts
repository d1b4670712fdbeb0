/**
 * Files mapped into memory (native/map_file.c, built at install): a decoded dataset copy is used where the page cache
 * holds it instead of being read into fresh memory, which costs a page fault per 4 KB page (~0.1 s for the 31 MB of
 * Fashion-MNIST 10k on a VM whose fresh pages are slow) in every process that loads it. Processes on one machine share
 * the mapped pages. TRAJLAB_MAP_FILES=off reads files instead.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Where the binding is built (by scripts/build-native.mjs). */
export const MAP_FILE_BINDING_PATH = fileURLToPath(new URL('../native/build/trajlab_map_file.node', import.meta.url));

/** Maps a whole file, private and copy-on-write: writes to the buffer never reach the file. Throws naming the file. */
export type FileMapper = (path: string) => ArrayBuffer;

let loaded: FileMapper | null | undefined;

/**
 * The file mapper, or null when files are read instead: TRAJLAB_MAP_FILES=off, the binding not built (no C compiler
 * at install, or Windows) or not loadable. Decided once per process.
 */
export function fileMapper(env: NodeJS.ProcessEnv = process.env): FileMapper | null {
  if ((env.TRAJLAB_MAP_FILES ?? '').trim().toLowerCase() === 'off') return null;
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (existsSync(MAP_FILE_BINDING_PATH)) {
    try {
      const binding = createRequire(import.meta.url)(MAP_FILE_BINDING_PATH) as { mapFile?: unknown };
      if (typeof binding.mapFile === 'function') loaded = binding.mapFile as FileMapper;
    } catch {
      // an unloadable binding (built for another Node, say): files are read
    }
  }
  return loaded;
}
