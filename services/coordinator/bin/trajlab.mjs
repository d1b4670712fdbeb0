#!/usr/bin/env node
// The `trajlab` command. It runs the JavaScript compiled at `pnpm install` (dist/, see scripts/build-js.mjs) while it
// matches the TypeScript sources, and otherwise the sources themselves through tsx's loader, so a checkout needs no
// build step and an edited one never runs stale code (TRAJLAB_COMPILED=off: always the sources).
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { compiledIsFresh, importEntry } from '../../../scripts/compiled.mjs';

// `trajlab show ... | head`: a reader that stops early is not an error
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const argv = process.argv.slice(2);
// `trajlab run --workers N` starts its shard processes first, so that their start-up overlaps this process's own
// (src/early-start.ts; compiled only: running the sources needs the TypeScript loader first, and cmdRun starts them)
const fresh = compiledIsFresh(root);
const started = argv[0] === 'run' && fresh ? (await import(pathToFileURL(join(here, '..', 'dist', 'early-start.js')).href)).startRunShardProcesses(argv) : [];
const { main } = await importEntry(root, join(here, '..'), fresh);
process.exitCode = await main(argv, started);
