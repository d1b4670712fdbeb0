/**
 * The first thing `trajlab run --workers N` does (bin/trajlab.mjs, before it loads the command's modules): start its
 * N - 1 shard processes. Each needs ~0.3-0.5 s to load its own modules and as long again to resolve the study and
 * build its device state; started here, that runs while this process loads and does the same, so the shard processes
 * are ready about when this one is, instead of that much later. Only Node's own modules are imported.
 */
import { startShardProcess, type StartedShardProcess } from '@trajlab/runner/shard-process';
import { parseRunArgs } from './run-args.js';

/**
 * The shard processes of the command line `argv` (without node and the script) if it is a `trajlab run` with more
 * than one worker, else none. Arguments it cannot parse start none: the command reports them.
 */
export function startRunShardProcesses(argv: string[]): StartedShardProcess[] {
  if (argv[0] !== 'run') return [];
  let args;
  try {
    args = parseRunArgs(argv.slice(1));
  } catch {
    return [];
  }
  const started: StartedShardProcess[] = [];
  try {
    while (started.length < args.workers - 1) started.push(startShardProcess(args.specPath, args.out, args.trace !== undefined));
  } catch {
    // a fork that fails here (no memory, too many processes) is tried again, and reported, by the command itself
  }
  return started;
}
