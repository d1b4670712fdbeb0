#!/usr/bin/env node
// Builds the optional file-mapping binding (native/map_file.c -> native/build/trajlab_map_file.node). Runs at
// `pnpm install`; where a C compiler or Node's headers are missing it says why and exits 0: decoded dataset copies are
// then read into memory instead of mapped. Set TRAJLAB_NATIVE_MAP=off to skip the build.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildAddon } from '../../../scripts/build-addon.mjs';

const native = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
buildAddon({
  sources: [join(native, 'map_file.c')],
  target: join(native, 'build', 'trajlab_map_file.node'),
  what: 'file mapping',
  fallback: 'decoded dataset copies are read instead',
  offSwitch: 'TRAJLAB_NATIVE_MAP',
});
