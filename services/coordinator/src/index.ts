import { BackendChoiceError, BlasChoiceError, backendFromEnv, describeBackend, GcChoiceError, initBackend, MallocChoiceError } from '@trajlab/backend';
import { DataFileError } from '@trajlab/datasets';
import { DenoiserSpecError } from '@trajlab/denoisers';
import { ArrowFileError } from '@trajlab/results';
import {
  aggregateStudy,
  claimTraceFile,
  distributedTraceText,
  processStart,
  runStudyEmbedded,
  ShardBatchSettingError,
  ShardProcesses,
  spanStart,
  TraceFileError,
  TraceRecorder,
  traceText,
  writeTraceFile,
  type StartedShardProcess,
} from '@trajlab/runner';
import { openStore, StoreError } from '@trajlab/storage';
import { DataCacheError, planStudy, prefetchSpecFile, resolveStudyFile, SpecError, type StudyPlan, type ResolvedStudy } from '@trajlab/study';
import { writeReport } from '@trajlab/report';
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatBytes, formatFlops, table } from './format.js';
import { progressPrinter } from './progress.js';
import { curveText, pivotText, summaryText, UnknownMetricError } from './show.js';
import { RedisUnavailableError, UnknownStudyError, UsageError } from './errors.js';
import { outRoot, parseRunArgs } from './run-args.js';
import { PayloadError, RedisUrlError } from '@trajlab/queue';
import { ModelFileError } from '@trajlab/models';
import { ModelExistsError, trainCommand } from './train.js';

/** The Redis-backed commands, loaded (with BullMQ) only by the commands that use them. */
const distributed = () => import('./distributed.js');

const HELP = `trajlab: large-scale studies of diffusion sampling trajectories

usage:
  trajlab validate <spec> [--json]          plan and cost estimate, no side effects
  trajlab run <spec> [--out DIR] [--workers N] [--trace FILE]
                                            embedded run (no Redis, no S3), shards in N processes (default: cores);
                                            --trace writes its timeline (Perfetto / about:tracing JSON)
  trajlab aggregate <studyId> [--out DIR]   (re)build summary.arrow and curves.arrow from the shards
  trajlab report <studyId|studyDir> [--out DIR]   (re)build summary/report.html from the output files
  trajlab show <studyId> [--out DIR] [--pivot METRIC | --curve METRIC]
                                            headline numbers per config, one summary metric as a method x NFE
                                            table, or one per-step metric against sigma (e.g. score_dev)
  trajlab train <train-spec> [--out DIR|s3://...] [--resume] [--force]
                                            train a denoiser (EDM loss) and write a tfjs model + trajlab-model.json

  trajlab submit <spec> [--out DIR|s3://...] [--watch [--trace FILE]]
                                            enqueue the study on BullMQ (REDIS_URL), print its id; --trace writes
                                            the workers' and the aggregator's timeline when it ends
  trajlab watch <studyId>                   live progress per config and overall, ETA, failures
  trajlab status [<studyId>]                state of one study, or of every submitted study
  trajlab cancel <studyId>                  stop a study (running shards stop at their next step)
  trajlab retry <studyId>                   run a failed or cancelled study's missing shards again
  Workers and the aggregator: \`pnpm worker\`, \`pnpm aggregator\` (same REDIS_URL and AWS variables).

environment:
  REDIS_URL        redis:// or rediss:// URL of the queue (default redis://127.0.0.1:6379)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3   for s3:// outputs
  TRAJLAB_OUT      default output root (default ./trajlab-out)
  TRAJLAB_BACKEND  auto | tensorflow | wasm | cpu (default auto)

exit codes: 0 ok, 1 runtime failure, 2 invalid input`;


function printPlan(study: ResolvedStudy, plan: StudyPlan, write: (s: string) => void): void {
  const d = study.data.dataset;
  write(`study     ${study.studyId}`);
  write(`dataset   ${d.source}: n=${d.n}, dim=${d.dim}, sha256 ${d.contentHash.slice(0, 16)}...`);
  write(`denoiser  ${study.spec.denoiser.kind}${study.spec.compare ? `   compare: ${study.spec.compare.kind}` : ''}`);
  for (const [role, m] of Object.entries(study.models)) {
    if (!m) continue;
    const d = study.spec[role as 'denoiser' | 'compare'] as { parameterization?: string; sigmaData?: number; noiseInput?: string; layout?: string };
    write(`model     ${role}: ${m.uri} (${m.format}, ${m.weights} weights, sha256 ${m.contentHash.slice(0, 16)}...; ${d.parameterization}, sigmaData ${d.sigmaData}, c_noise ${d.noiseInput}, layout ${d.layout})`);
  }
  write(`samples   ${study.spec.samples} per config, seed ${study.spec.seed}, shard size ${plan.shardSize}${plan.shardSize !== plan.requestedShardSize ? ` (requested ${plan.requestedShardSize})` : ''}`);
  write('');
  write(
    table(
      ['config', 'role', 'solver', 'schedule', 'steps', 'NFE', 'shards'],
      plan.configs.map((c) => [c.configId, c.role, c.solver, c.schedule, c.steps, c.nfe, c.shards.length]),
    ),
  );
  write('');
  const t = plan.totals;
  write(`trajectories           ${t.trajectories} in ${t.jobs} job(s)`);
  write(`denoiser evaluations   ${t.solverEvaluations} by the solvers + ~${Math.round(t.metricEvaluations)} for metrics`);
  write(`compute                ~${formatFlops(t.flops)}`);
  write(`memory per job         ~${formatBytes(t.jobMemoryBytes)} (budget ${study.spec.memoryBudgetMB} MiB)`);
  write(`output                 ~${formatBytes(t.outputBytes)}`);
  for (const n of plan.notes) write(`note: ${n}`);
}

async function cmdValidate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { json: { type: 'boolean', default: false } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('validate takes one spec file');
  await prefetchSpecFile(positionals[0]!);
  const { study } = resolveStudyFile(positionals[0]!);
  const plan = planStudy(study);
  if (values.json) process.stdout.write(`${JSON.stringify({ studyId: study.studyId, spec: study.spec, data: study.data, plan }, null, 2)}\n`);
  else printPlan(study, plan, (s) => process.stdout.write(`${s}\n`));
  return 0;
}

/** `trajlab run`; `started`: its shard processes if bin/trajlab.mjs started them already (early-start.ts). */
async function cmdRun(args: string[], started: StartedShardProcess[]): Promise<number> {
  const entered = spanStart();
  const { specPath, out, workers, quiet, trace: traceFile } = parseRunArgs(args);
  // --trace: a path that cannot be written is refused before anything else is done
  if (traceFile !== undefined) claimTraceFile(traceFile);
  const trace = new TraceRecorder(traceFile !== undefined);
  const writeTrace = () => traceFile !== undefined && writeTraceFile(traceFile, traceText(trace.recorded(), 'trajlab run'));
  trace.end(processStart(), 'modules', 'start-up', {}, entered);
  // The shard processes start before the spec is validated (if bin/trajlab.mjs has not started them before this
  // process loaded its modules), so that their start-up (Node, the tensor backend, the study's data and device state)
  // overlaps this one's. They resolve the spec themselves and write nothing until given a shard; those the plan has no
  // job for, or all of them if the spec is refused, are stopped.
  const early = workers > 1 ? new ShardProcesses(workers - 1, specPath, out, started, trace) : null;
  try {
    // Validate everything before touching the backend or the output.
    const choice = backendFromEnv();
    const { resolved, plan } = await trace.span('resolve', 'start-up', async () => {
      await prefetchSpecFile(specPath);
      const resolved = resolveStudyFile(specPath);
      return { resolved, plan: planStudy(resolved.study) };
    });
    const { study } = resolved;
    openStore(out);
    // One process per core, at most one per job (a single job runs here).
    const processes = Math.min(workers, plan.totals.jobs);
    early?.keep(processes - 1);
    const backend = await trace.span('backend', 'start-up', () => initBackend(choice));
    const log = (s: string) => process.stderr.write(`${s}\n`);
    log(`backend: ${describeBackend(backend)}${backend.skipped.length ? `; skipped ${backend.skipped.join('; ')}` : ''}`);
    log(`study ${study.studyId}: ${plan.configs.length} config(s) x ${study.spec.samples} samples, ${plan.totals.jobs} job(s), ~${formatFlops(plan.totals.flops)}`);
    const bar = quiet ? null : progressPrinter();
    if (processes > 1) log(`running shards in ${processes} processes`);
    const res = await runStudyEmbedded(specPath, { out, onProgress: bar?.update, log, workers: processes, resolved, trace, ...(early ? { processes: early } : {}) });
    bar?.done();
    log(`done in ${(res.elapsedMs / 1000).toFixed(1)} s (${res.shardsComputed} shard(s) computed, ${res.shardsReused} reused)`);
    process.stdout.write(`study    ${res.studyId}\n`);
    process.stdout.write(`outputs  ${res.studyDir}\n`);
    process.stdout.write(`summary  ${res.summary}\n`);
    process.stdout.write(`curves   ${res.curves}\n`);
    writeTrace();
    process.stdout.write(`report   ${res.report}\n`);
    if (traceFile !== undefined) process.stdout.write(`trace    ${traceFile}\n`);
    process.stdout.write(`\n${await summaryText(openStore(out), res.studyId)}\n`);
    return 0;
  } catch (err) {
    early?.keep(0);
    // the timeline up to the failure, which is what is reported
    if (!(err instanceof TraceFileError)) {
      try {
        writeTrace();
      } catch (traceErr) {
        process.stderr.write(`trajlab: ${traceErr instanceof Error ? traceErr.message : String(traceErr)}\n`);
      }
    }
    throw err;
  } finally {
    early?.close();
  }
}

async function cmdReport(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('report takes a study id or a study directory');
  const arg = positionals[0]!;
  // A study directory (it holds study.json), e.g. a copied output folder; else a study id under --out / TRAJLAB_OUT / the registry.
  if (existsSync(join(arg, 'study.json'))) {
    const dir = resolve(arg);
    process.stdout.write(`${await writeReport(openStore(dirname(dir)), basename(dir))}\n`);
    return 0;
  }
  const store = openStore(values.out ?? process.env.TRAJLAB_OUT ?? (await (await distributed()).registeredOut(arg)));
  process.stdout.write(`${await writeReport(store, arg)}\n`);
  return 0;
}

async function cmdShow(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' }, pivot: { type: 'string' }, curve: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('show takes one study id');
  if (values.pivot && values.curve) throw new UsageError('show takes --pivot or --curve, not both');
  const store = openStore(outRoot(values.out));
  const id = positionals[0]!;
  const text = values.pivot ? await pivotText(store, id, values.pivot) : values.curve ? await curveText(store, id, values.curve) : await summaryText(store, id);
  process.stdout.write(`${text}\n`);
  return 0;
}

async function cmdSubmit(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' }, watch: { type: 'boolean', default: false }, trace: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('submit takes one spec file');
  const traceFile = values.trace;
  if (traceFile !== undefined) {
    // the jobs' spans wait in Redis until the watch takes them at the study's end
    if (!values.watch) throw new UsageError('--trace needs --watch (the timeline is written when the study ends)');
    claimTraceFile(traceFile);
  }
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const { submitStudy, takeStudyTrace, watchStudy } = await distributed();
  const { studyId, added } = await submitStudy(positionals[0]!, outRoot(values.out), log, traceFile !== undefined);
  process.stdout.write(`${studyId}\n`);
  if (!values.watch) return 0;
  if (traceFile !== undefined && !added) log(`--trace: study ${studyId} was already submitted: its jobs send spans only if that submit asked for a timeline`);
  const final = await watchStudy(studyId, (s) => process.stderr.write(s));
  if (traceFile !== undefined) {
    writeTraceFile(traceFile, distributedTraceText(await takeStudyTrace(studyId)));
    log(`trace    ${traceFile}`);
  }
  return final.state === 'complete' ? 0 : 1;
}

async function cmdWatch(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { interval: { type: 'string', default: '1' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('watch takes one study id');
  const { watchStudy } = await distributed();
  const final = await watchStudy(positionals[0]!, (s) => process.stdout.write(s), 1000 * Number(values.interval), Boolean(process.stdout.isTTY));
  return final.state === 'complete' ? 0 : 1;
}

async function cmdStatus(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, options: { json: { type: 'boolean', default: false } }, allowPositionals: true });
  const { listStudies, oneStatus, renderStatus } = await distributed();
  const all = positionals.length === 0 ? await listStudies() : [await oneStatus(positionals[0]!)];
  if (all.length === 0) process.stdout.write('no studies submitted\n');
  for (const s of all) process.stdout.write(`${renderStatus(s, null)}\n`);
  return 0;
}

async function cmdCancel(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('cancel takes one study id');
  await (await distributed()).cancelStudy(positionals[0]!);
  process.stdout.write(`cancelled ${positionals[0]}\n`);
  return 0;
}

async function cmdRetry(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('retry takes one study id');
  await (await distributed()).retryStudy(positionals[0]!, (s) => process.stdout.write(`${s}\n`));
  return 0;
}

async function cmdTrain(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { out: { type: 'string' }, resume: { type: 'boolean', default: false }, force: { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('train takes one training spec file');
  await trainCommand(positionals[0]!, { out: values.out, outRoot: outRoot(undefined), resume: values.resume, force: values.force, quiet: values.quiet });
  return 0;
}

async function cmdAggregate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { out: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new UsageError('aggregate takes one study id');
  // Output root: --out, TRAJLAB_OUT, or where the study was submitted to (Redis registry).
  const store = openStore(values.out ?? process.env.TRAJLAB_OUT ?? (await (await distributed()).registeredOut(positionals[0]!)));
  const res = await aggregateStudy(store, positionals[0]!);
  process.stdout.write(`summary  ${res.summary}\ncurves   ${res.curves}\n`);
  return 0;
}

/** Errors caused by the user's input: exit code 2 with the message alone. */
function isInputError(err: unknown): boolean {
  return (
    err instanceof UsageError ||
    err instanceof SpecError ||
    err instanceof DataFileError ||
    err instanceof DenoiserSpecError ||
    err instanceof BackendChoiceError ||
    err instanceof BlasChoiceError ||
    err instanceof MallocChoiceError ||
    err instanceof GcChoiceError ||
    err instanceof ShardBatchSettingError ||
    err instanceof RedisUrlError ||
    err instanceof UnknownStudyError ||
    err instanceof PayloadError ||
    err instanceof ModelFileError ||
    err instanceof ModelExistsError ||
    err instanceof UnknownMetricError ||
    err instanceof TraceFileError
  );
}

/**
 * Runs the CLI; returns the exit code. `started`: shard processes bin/trajlab.mjs started for a `trajlab run` before
 * loading this module (early-start.ts); those the command does not take are stopped.
 */
export async function main(argv: string[], started: StartedShardProcess[] = []): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'validate':
        return await cmdValidate(rest);
      case 'run':
        return await cmdRun(rest, started);
      case 'aggregate':
        return await cmdAggregate(rest);
      case 'show':
        return await cmdShow(rest);
      case 'report':
        return await cmdReport(rest);
      case 'submit':
        return await cmdSubmit(rest);
      case 'watch':
        return await cmdWatch(rest);
      case 'status':
        return await cmdStatus(rest);
      case 'cancel':
        return await cmdCancel(rest);
      case 'retry':
        return await cmdRetry(rest);
      case 'train':
        return await cmdTrain(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${HELP}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command '${command}'\n\n${HELP}`);
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (isInputError(err)) {
      process.stderr.write(`trajlab: invalid input: ${message}\n`);
      return 2;
    }
    if (err instanceof StoreError || err instanceof ArrowFileError || err instanceof RedisUnavailableError || err instanceof DataCacheError) {
      process.stderr.write(`trajlab: ${message}\n`);
      return 1;
    }
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`trajlab: invalid input: ${message}\n`);
      return 2;
    }
    process.stderr.write(`trajlab: failed: ${err instanceof Error ? (err.stack ?? message) : message}\n`);
    return 1;
  } finally {
    for (const p of started) if (!p.adopted) p.child.kill();
  }
}
