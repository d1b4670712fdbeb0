/**
 * The arguments of `trajlab run`, in a module that imports nothing but Node's own: the command parses them again
 * before it loads anything else, to start its shard processes at once (early-start.ts).
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

/** `trajlab run <spec> [--out DIR] [--workers N] [--quiet] [--trace FILE]`, parsed. */
export interface RunArgs {
  /** The study spec file, as given (YAML or JSON; a local path or s3://). */
  specPath: string;
  /** Output root: --out. @defaultValue TRAJLAB_OUT, else ./trajlab-out */
  out: string;
  /** Processes that run shards (this one included). @defaultValue the number of cores */
  workers: number;
  /** No progress bar. @defaultValue false */
  quiet: boolean;
  /**
   * Where to write the run's timeline (every process's start-up, batches, aggregation and report, with their CPU
   * time; Trace Event Format JSON, see runner/src/trace.ts): --trace. @defaultValue none written
   */
  trace?: string;
}

/** The output root: the --out flag, else TRAJLAB_OUT, else ./trajlab-out. */
export function outRoot(flag: string | undefined): string {
  return flag ?? process.env.TRAJLAB_OUT ?? 'trajlab-out';
}

/** Parses `trajlab run`'s arguments (after the command name); a UsageError names what is wrong. */
export function parseRunArgs(args: string[]): RunArgs {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' }, quiet: { type: 'boolean', default: false }, workers: { type: 'string' }, trace: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('run takes one spec file');
  const workers = values.workers === undefined ? availableParallelism() : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1) throw new UsageError(`--workers must be a positive integer; got '${values.workers}'`);
  return { specPath: positionals[0]!, out: outRoot(values.out), workers, quiet: values.quiet, ...(values.trace !== undefined ? { trace: values.trace } : {}) };
}
