#!/usr/bin/env node
// The trajlab worker service (services/worker/src/index.ts): its JavaScript compiled at `pnpm install` while it matches
// the sources, else the sources through tsx (see scripts/compiled.mjs; TRAJLAB_COMPILED=off: always the sources).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importEntry } from '../../../scripts/compiled.mjs';

const here = dirname(fileURLToPath(import.meta.url));
await importEntry(join(here, '..', '..', '..'), join(here, '..'));
