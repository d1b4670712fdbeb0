#!/usr/bin/env node
// The `trajlab` command: runs the TypeScript sources through tsx's loader, so a checkout needs no build step.
import { register } from 'tsx/esm/api';

register();
// `trajlab show ... | head`: a reader that stops early is not an error
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
const { main } = await import('../src/index.ts');
process.exitCode = await main(process.argv.slice(2));
