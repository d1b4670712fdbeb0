/**
 * `pnpm bench [kernel|study|aggregator|distributed|train ...]`: trajlab's benchmark suite (all parts by default). Writes bench/results.json and the table between the bench markers in
 * README.md. Every figure is a median over repeated runs, with the command that produced it and the machine it ran on.
 * Benchmarks measure; they never fail a build.
 */
import * as tf from '@tensorflow/tfjs-core';
import { activeNativeBlas, describeBackend, initBackend, installNativeMatMul, nativeMatMulActive, transparentHugePages, uninstallNativeMatMul } from '@trajlab/backend';
import { loadIdxFile, gaussianDataset, type Dataset } from '@trajlab/datasets';
import { polynomialSigmas } from '@trajlab/core';
import { kdeChunkSums, TrainingSet } from '@trajlab/denoisers';
import { trainDenoiser, type Architecture } from '@trajlab/models/training';
import { EarlyFolds, type TraceEvent } from '@trajlab/runner';
import { FsStore, openStore } from '@trajlab/storage';
import { aggregateShards, buildTable, makeSchema, STEPS_COLUMNS, SAMPLES_COLUMNS, toIpcFile, type ColumnData } from '@trajlab/results';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FMNIST = '/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

interface Figure {
  name: string;
  value: number;
  unit: string;
  detail: string;
  command: string;
}
const figures: Figure[] = [];
const add = (f: Figure) => {
  figures.push(f);
  log(`${f.name}: ${f.value.toPrecision(4)} ${f.unit} (${f.detail})`);
};

/** What the benchmarks run on, in the figures' details. */
const SOURCE = existsSync(FMNIST) ? 'Fashion-MNIST, 10k images' : 'synthetic Gaussian 10k x 784 (Fashion-MNIST not installed)';

/** Median seconds of 7 runs of `run` (after one warm-up run). */
function medianRunSeconds(run: () => void): number {
  run();
  const runs: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    run();
    runs.push((performance.now() - t0) / 1000);
  }
  return median(runs);
}

/** Median seconds of 7 runs of `f` (after one warm-up run), each until its result is on the host. */
function medianSeconds(f: () => tf.Tensor): number {
  return medianRunSeconds(() => {
    const out = f();
    out.dataSync();
    out.dispose();
  });
}

function dataset(): Dataset {
  return existsSync(FMNIST) ? loadIdxFile(FMNIST, { limit: 10000 }) : gaussianDataset({ dim: 784, n: 10000, rank: 64, seed: 1 });
}

/**
 * 7. Certified pruning by sigma: one evaluation of 32 queries (training points plus noise of that sigma) with the dense
 * and the pruned optimal denoiser at each noise level of the perf study's Euler 20 schedule, and the fraction of
 * points the pruned one kept; plus the pruned set-up (principal axes, bounds).
 */
async function pruning(data: Dataset) {
  const dense = new TrainingSet(data.points, data.n, data.dim);
  const t0 = performance.now();
  const pruned = new TrainingSet(data.points, data.n, data.dim, { pruning: { rank: 32, tolerance: 1e-7 } });
  const setup = performance.now() - t0;
  add({ name: 'pruning set-up', value: setup, unit: 'ms', detail: `${SOURCE}; principal axes (rank 32) and bound tables, computed`, command: 'pnpm bench pruning' });
  // the same tables read from the data cache, as every process after the first reads them (native products only)
  if (activeNativeBlas()) {
    const cache = { dir: mkdtempSync(join(tmpdir(), 'trajlab-bench-pruning-')), contentHash: data.contentHash };
    new TrainingSet(data.points, data.n, data.dim, { pruning: { rank: 32, tolerance: 1e-7 }, pruningCache: cache }).dispose();
    const reads: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t1 = performance.now();
      const read = new TrainingSet(data.points, data.n, data.dim, { pruning: { rank: 32, tolerance: 1e-7 }, pruningCache: cache });
      reads.push(performance.now() - t1);
      if (!read.pruningTablesRead) throw new Error('the pruning tables just written were not read back');
      read.dispose();
    }
    const bytes = readdirSync(cache.dir).reduce((a, f) => a + readFileSync(join(cache.dir, f)).length, 0);
    add({ name: 'pruning set-up, tables on disk', value: median(reads), unit: 'ms', detail: `${SOURCE}; the same tables read from the data cache (${(bytes / 2 ** 20).toFixed(1)} MiB, sha256 checked), as every process after the first over these points; the training set's squared norms included (median of 5)`, command: 'pnpm bench pruning' });
    rmSync(cache.dir, { recursive: true, force: true });
  }
  const time = (ts: TrainingSet, x: tf.Tensor2D, t: number) => 1000 * medianSeconds(() => ts.denoise(x, t));
  for (const t of polynomialSigmas(20, 0.002, 80, 7).slice(0, -1)) {
    const x = tf.tidy(() => tf.add(tf.tensor2d(data.points.slice(0, 32 * data.dim), [32, data.dim]), tf.mul(tf.randomNormal([32, data.dim], 0, 1, 'float32', 7), t))) as tf.Tensor2D;
    const before = { ...pruned.pruningStats };
    const denseMs = time(dense, x, t);
    const prunedMs = time(pruned, x, t);
    const kept = (pruned.pruningStats.pointsKept - before.pointsKept) / (pruned.pruningStats.pointsTotal - before.pointsTotal);
    add({ name: `pruned evaluation at sigma ${t.toPrecision(3)}`, value: prunedMs, unit: 'ms', detail: `32 noisy training points; dense ${denseMs.toFixed(1)} ms; ${kept >= 0.1 ? (kept * 100).toFixed(0) : (kept * 100).toPrecision(2)}% of points kept`, command: 'pnpm bench pruning' });
    x.dispose();
  }
  dense.dispose();
  pruned.dispose();
}

/**
 * 1. The optimal denoiser kernel against the same backend's plain matMul at the same shapes: the two products of an
 * evaluation, x . y^T ([B, d] x [d, n], with y transposed by the native product and pre-transposed for wasm's own) and
 * w . y ([B, n] x [n, d]). Native products and wasm's own.
 */
async function kernel(data: Dataset) {
  const providers = nativeMatMulActive() ? ['native', 'wasm'] : [tf.getBackend()];
  for (const provider of providers) {
    if (provider === 'wasm' && nativeMatMulActive()) uninstallNativeMatMul();
    const label = provider === 'native' ? ', native sgemm' : provider === 'wasm' && providers.length > 1 ? ", wasm's own matMul" : '';
    const ts = new TrainingSet(data.points, data.n, data.dim);
    for (const B of [32, 64]) {
      const x = tf.randomNormal([B, data.dim], 0, 1, 'float32', 1) as tf.Tensor2D;
      const y = tf.randomNormal([data.n, data.dim], 0, 1, 'float32', 2) as tf.Tensor2D;
      const yt = provider === 'native' ? null : (tf.transpose(y) as tf.Tensor2D);
      const w = tf.randomUniform([B, data.n], 0, 1, 'float32', 3) as tf.Tensor2D;
      const mm = medianSeconds(() => (yt ? tf.matMul(x, yt) : tf.matMul(x, y, false, true))) + medianSeconds(() => tf.matMul(w, y));
      const den = medianSeconds(() => ts.denoise(x, 1.0));
      const mmRate = (4 * B * data.dim * data.n) / mm / 1e9;
      const kRate = (4 * B * data.dim * data.n) / den / 1e9;
      add({ name: `matMul x.y^T + w.y, batch ${B}${label}`, value: mmRate, unit: 'GFLOP/s', detail: `[${B}, ${data.dim}] x [${data.dim}, ${data.n}] then [${B}, ${data.n}] x [${data.n}, ${data.dim}]: ${(mm * 1000).toFixed(1)} ms, one thread`, command: 'pnpm bench kernel' });
      add({ name: `optimal denoiser, batch ${B}${label}`, value: kRate, unit: 'GFLOP/s', detail: `${(den * 1000).toFixed(1)} ms per evaluation of ${B} queries, ${((kRate / mmRate) * 100).toFixed(0)}% of matMul's rate, ${(B / den).toFixed(0)} query evaluations/s`, command: 'pnpm bench kernel' });
      tf.dispose([x, y, w, ...(yt ? [yt] : [])]);
    }
    ts.dispose();
  }
  if (providers.length > 1) installNativeMatMul();
  kdeSums(data.n);
  // The same evaluation in one process, then in two at once (the two cores of `trajlab run --workers 2`): what the two
  // processes compute together against the one alone bounds what a second process can add to a study this kernel
  // dominates. Taken KERNEL_PAIRS times, each pair right after its own probe alone, since a VM's cores can lose speed
  // to its host for seconds at a time (noise that one pair cannot tell from a limit).
  const pairs: { alone: number; paired: number[]; gain: number }[] = [];
  for (let i = 0; i < KERNEL_PAIRS; i++) {
    const alone = await kernelProbe();
    const paired = await Promise.all([kernelProbe(), kernelProbe()]);
    pairs.push({ alone, paired, gain: paired.reduce((sum, ms) => sum + alone / ms, 0) });
  }
  const rate = (ms: number) => (4 * 32 * data.dim * data.n) / (ms / 1000) / 1e9;
  const gains = pairs.map((p) => p.gain);
  const mid = pairs.find((p) => p.gain === median(gains))!;
  add({
    name: 'optimal denoiser, batch 32, two processes at once',
    value: median(gains),
    unit: 'x one process',
    detail: `what two processes evaluating at once compute together, against one alone just before (sum of alone / paired time per evaluation), median of ${KERNEL_PAIRS} pairs (${Math.min(...gains).toFixed(2)}-${Math.max(...gains).toFixed(2)}); the median pair: ${mid.paired.map((ms) => ms.toFixed(1)).join(' and ')} ms per evaluation (${mid.paired.map((ms) => rate(ms).toFixed(0)).join(' and ')} GFLOP/s) against ${mid.alone.toFixed(1)} ms alone; all pairs: ${pairs.map((p) => `${p.alone.toFixed(1)} | ${p.paired.map((ms) => ms.toFixed(1)).join(', ')}`).join('; ')} ms`,
    command: 'pnpm bench kernel',
  });
}

/**
 * 1b. The KDE gain metric's exponential sums (TrainingSet.kdeGain, float64) of a batch of 32 rows over `n` points: the
 * native binding's kdeSums against the same arithmetic in JavaScript (kde-sums.ts; the same bits), on logits spread
 * like a mid-schedule step's.
 */
function kdeSums(n: number) {
  const B = 32;
  const a = Float32Array.from({ length: B * n }, (_, i) => 30 + 8 * Math.sin(i * 0.37));
  const dy = Float32Array.from({ length: B * n }, (_, i) => 0.3 * Math.cos(i * 0.11));
  const rowTerm = Float64Array.from({ length: B }, (_, r) => 0.01 * r);
  const out = new Float64Array(4 * B);
  const ms = (run: () => void) => 1000 * medianRunSeconds(run);
  const js = ms(() => kdeChunkSums(a, dy, rowTerm, 1, out));
  const native = activeNativeBlas();
  if (!native) {
    add({ name: 'KDE gain sums, batch 32, JavaScript', value: js, unit: 'ms', detail: `${B} rows x ${n} points, two float64 exponentials per term`, command: 'pnpm bench kernel' });
    return;
  }
  const nat = ms(() => native.kdeSums(a, dy, rowTerm, 1, out));
  add({
    name: 'KDE gain sums, batch 32, native',
    value: nat,
    unit: 'ms',
    detail: `${B} rows x ${n} points, two float64 exponentials per term (${native.isa()}): ${(js / nat).toFixed(1)}x faster than the same arithmetic in JavaScript (${js.toFixed(1)} ms), the same bits`,
    command: 'pnpm bench kernel',
  });
}

/** Probe duration: evaluations run this long, and the middle half is timed (so that probes started together overlap). */
const PROBE_SECONDS = 2;

/** Times the kernel probe is run alone and then two at once. */
const KERNEL_PAIRS = 5;
/** Pairs of distributed and embedded runs of the 512-trajectory study (the 2048-trajectory one takes three). */
const SHORT_PAIRS = 5;

/** Median milliseconds of a dense evaluation of 32 queries, in a process of its own (`bench/run.ts kernel-probe`). */
async function kernelProbe(): Promise<number> {
  return Number((await probeOutput('kernel-probe')).trim());
}

/**
 * What this file prints run as a probe (`bench/run.ts <mode> ...args`) in a process of its own, with `env` added to
 * this one's; its stderr is shown unless `quiet`. Rejects when it fails.
 */
function probeOutput(mode: string, args: string[] = [], env: Record<string, string> = {}, quiet = false): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), mode, ...args], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.on('close', (code) => (code === 0 ? res(out) : rej(new Error(`bench/run.ts ${mode} exited with ${code}`))));
  });
}

/** The probe itself: evaluations for PROBE_SECONDS, the median of those in the middle half, printed in ms. */
async function runKernelProbe(data: Dataset) {
  const ts = new TrainingSet(data.points, data.n, data.dim);
  const x = tf.randomNormal([32, data.dim], 0, 1, 'float32', 1) as tf.Tensor2D;
  const times: number[] = [];
  const t0 = performance.now();
  for (let now = t0; now - t0 < PROBE_SECONDS * 1000; now = performance.now()) {
    const out = ts.denoise(x, 1.0);
    out.dataSync();
    out.dispose();
    const end = performance.now();
    if (now - t0 > (PROBE_SECONDS * 1000) / 4 && end - t0 < (PROBE_SECONDS * 3000) / 4) times.push(end - now);
  }
  process.stdout.write(`${median(times)}\n`);
}

/** What one `trajlab ...` process took: its exit code, output, wall seconds and CPU seconds. */
interface CommandRun {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
  /** User + system CPU seconds of the command and every process it waited for (its shard processes), 10 ms resolution. */
  cpuSeconds: number;
}

/** Marks where the shell's `times` output starts on the command's stderr (see run). */
const TIMES_MARK = '@@trajlab-bench-times';

/**
 * Runs `trajlab <args>` in a shell that prints its children's CPU times when it exits (`times`: Node has no
 * RUSAGE_CHILDREN), so the CPU the command and its shard processes spent is counted along with the wall time.
 */
function run(args: string[], env: Record<string, string> = {}, pin = false): Promise<CommandRun> {
  return new Promise((res) => {
    const t0 = performance.now();
    // pinned: the command and every thread and process it starts run on core 0 alone (taskset)
    const script = `${pin ? 'taskset -c 0 ' : ''}"$0" "$@"; s=$?; echo ${TIMES_MARK} >&2; times >&2; exit $s`;
    const child = spawn('/bin/sh', ['-c', script, process.execPath, join(REPO, 'services/coordinator/bin/trajlab.mjs'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const mark = stderr.lastIndexOf(`${TIMES_MARK}\n`);
      // `times` prints the shell's own user and system times, then its children's: "0m4.890000s 0m0.226000s"
      const children = mark < 0 ? undefined : stderr.slice(mark).trim().split('\n')[2];
      const m = children ? /^(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s$/.exec(children.trim()) : null;
      const cpuSeconds = m ? 60 * Number(m[1]) + Number(m[2]) + 60 * Number(m[3]) + Number(m[4]) : Number.NaN;
      res({ code: code ?? -1, stdout, stderr: mark < 0 ? stderr : stderr.slice(0, mark), seconds, cpuSeconds });
    });
  });
}

/** One `trajlab run` of `spec` with `workers` processes into `out` (wall and CPU seconds); throws with its stderr if it fails. */
async function runOnce(spec: string, out: string, workers: number, env: Record<string, string> = {}, pin = false): Promise<CommandRun> {
  const res = await run(['run', spec, '--out', out, '--workers', String(workers), '--quiet'], env, pin);
  if (res.code !== 0) throw new Error(res.stderr);
  return res;
}

/** Wall seconds of one `trajlab run` of `spec` with `workers` processes into `out`; throws with its stderr if it fails. */
async function runSeconds(spec: string, out: string, workers: number, env: Record<string, string> = {}): Promise<number> {
  return (await runOnce(spec, out, workers, env)).seconds;
}

/** Median wall seconds of three `trajlab run` of `spec` with `workers` processes (outputs under `dir`, named by `tag`). */
async function medianRun(spec: string, dir: string, tag: string, workers: number, env: Record<string, string> = {}): Promise<number> {
  const secs: number[] = [];
  for (let r = 0; r < 3; r++) secs.push(await runSeconds(spec, join(dir, `out-${tag}-${workers}-${r}`), workers, env));
  return median(secs);
}

/**
 * Wall and CPU seconds of `pairs` runs of `spec` with `--workers 1` and `--workers 2`, alternating (1, 2, 1, 2, ...): a
 * drift of the machine's speed (a VM's host can slow it by a third for seconds at a time) hits both alike, and the
 * speed-up is taken within each pair.
 */
async function pairedRuns(spec: string, dir: string, tag: string, pairs: number, startUpSpec: string, env: Record<string, string> = {}): Promise<PairedRuns> {
  const runs: Record<1 | 2, CommandRun[]> = { 1: [], 2: [] };
  const startUp: number[] = [];
  for (let r = 0; r < pairs; r++) {
    startUp.push(await runSeconds(startUpSpec, join(dir, `out-${tag}-start-up-${r}`), 1, env));
    for (const workers of [1, 2] as const) runs[workers].push(await runOnce(spec, join(dir, `out-${tag}-${workers}-${r}`), workers, env));
  }
  const one = runs[1].map((r) => r.seconds);
  const two = runs[2].map((r) => r.seconds);
  return { one, two, speedUps: one.map((s, i) => s / two[i]!), cpuOne: runs[1].map((r) => r.cpuSeconds), cpuTwo: runs[2].map((r) => r.cpuSeconds), startUp };
}

interface PairedRuns {
  /** Wall seconds with one process, then with two, run by run. */
  one: number[];
  two: number[];
  /** one[i] / two[i]. */
  speedUps: number[];
  /** CPU seconds (all processes) with one process, then with two, run by run. */
  cpuOne: number[];
  cpuTwo: number[];
  /**
   * Wall seconds of a run of the same study that computes almost nothing (startUpSpec), one before each pair: the
   * part of a run that one process does whatever the number of processes.
   */
  startUp: number[];
}

/**
 * The perf study shrunk to what every run does whatever it computes: 2 samples per config, one step per solver, with
 * the same data, denoiser and metrics (start-up, the study's state, writing, aggregation and report).
 */
const startUpSpec = (dir: string, uri: string | null, pruning: boolean) => perfSpec(dir, uri, pruning, 2, false, { euler: 1, heun: 1 });

/** Whether `taskset` (util-linux) can pin a process here. */
function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** "a-b" range of `xs`, each written by `format` (three significant digits by default). */
const range = (xs: number[], format = (v: number) => v.toPrecision(3)) => `${format(Math.min(...xs))}-${format(Math.max(...xs))}`;

/** Slices of the steadiness loop. */
const STEADY_SLICES = 30;

/**
 * How steady the machine's speed is: a fixed scalar loop (no memory traffic beyond 32 KB) timed in STEADY_SLICES
 * slices of ~0.1 s. The slowest slice over the fastest is how far two identical runs can differ for the machine's sake
 * alone; on a dedicated core it stays within a few percent.
 */
function steadiness(before: string) {
  const a = new Float64Array(4096).fill(1.0001);
  const times: number[] = [];
  let sink = 0;
  for (let slice = 0; slice < STEADY_SLICES; slice++) {
    const t0 = performance.now();
    for (let rep = 0; rep < 10000; rep++) for (let i = 0; i < a.length; i++) sink += a[i]! * a[(i * 7) & 4095]!;
    times.push(performance.now() - t0);
  }
  if (sink === 0) log('unreachable');
  const sorted = [...times].sort((x, y) => x - y);
  add({
    name: `machine steadiness before ${before}`,
    value: sorted[sorted.length - 1]! / sorted[0]!,
    unit: 'x (slowest / fastest slice)',
    detail: `a fixed scalar loop in ${STEADY_SLICES} slices: ${sorted[0]!.toFixed(0)}-${sorted[sorted.length - 1]!.toFixed(0)} ms a slice, median ${median(times).toFixed(0)} ms; identical runs can differ this much for the machine's sake alone`,
    command: `pnpm bench ${before}`,
  });
}

/**
 * What a page of fresh memory costs on this machine: 64 MiB of new Float32Array (a fresh mapping from the allocator)
 * touched once per 4 KiB page, median of 5. Each first touch is a page fault; on some VMs they cost ~10x what they
 * cost elsewhere, which every process's start-up (its heap, bundle, data and buffers) pays many thousand times.
 */
function freshPages(before: string) {
  const bytes = 64 * 1024 * 1024;
  const pages = bytes / 4096;
  const perPage: number[] = [];
  const again: number[] = [];
  for (let rep = 0; rep < 5; rep++) {
    let t0 = performance.now();
    const a = new Float32Array(bytes / 4);
    for (let i = 0; i < a.length; i += 1024) a[i] = 1;
    perPage.push(((performance.now() - t0) * 1000) / pages);
    t0 = performance.now();
    for (let i = 0; i < a.length; i += 1024) a[i] = 2;
    again.push(((performance.now() - t0) * 1000) / pages);
  }
  add({
    name: `fresh memory page before ${before}`,
    value: median(perPage),
    unit: 'us per 4 KiB page',
    detail: `first touch of each page of a new 64 MiB array (a page fault each), median of 5 (${Math.min(...perPage).toFixed(2)}-${Math.max(...perPage).toFixed(2)} us); touching the same pages again: ${median(again).toFixed(3)} us a page`,
    command: `pnpm bench ${before}`,
  });
}

/** Median wall seconds (whole process) and sampling-loop seconds of three runs of the numpy peer on `samples` per config. */
function numpyPeer(uri: string, samples: number): { wall: number; loop: number } {
  const wall: number[] = [];
  const loop: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    const out = JSON.parse(execFileSync('python3', [join(REPO, 'bench/numpy_peer.py'), uri, '10000', String(samples)], { encoding: 'utf8' })) as { seconds: number };
    wall.push((performance.now() - t0) / 1000);
    loop.push(out.seconds);
  }
  return { wall: median(wall), loop: median(loop) };
}

/** The perf spec: Euler 20 + Heun 10 (20 NFE each), 256 samples per config, sampling only (metrics off), optionally certified pruning. */
/**
 * The perf study's spec file: Fashion-MNIST 10k (or synthetic), Euler 20 + Heun 10, `samples` per config, the dense or
 * pruned optimal denoiser; metrics off unless `everyMetric` (the spec defaults: KDE gain, nearest neighbours, PCA, the
 * denoised value filled in at every point).
 */
function perfSpec(dir: string, uri: string | null, pruning: boolean, samples = 256, everyMetric = false, steps = { euler: 20, heun: 10 }): string {
  const spec = {
    name: 'perf',
    samples,
    shardSize: 32,
    dataset: uri ? { kind: 'idx', uri, limit: 10000 } : { kind: 'gaussian', dim: 784, n: 10000, rank: 64, seed: 1 },
    denoiser: pruning ? { kind: 'optimal', pruning: { rank: 32, tolerance: 1e-7 } } : { kind: 'optimal' },
    solvers: [
      { solver: 'euler', steps: steps.euler },
      { solver: 'heun', steps: steps.heun },
    ],
    keepStates: 0,
    ...(everyMetric ? {} : { metrics: { kde: false, nearest: false, pca: false, fillDenoised: false } }),
  };
  const path = join(dir, `perf-${pruning ? 'pruned' : 'dense'}-${samples}${everyMetric ? '-metrics' : ''}-s${steps.euler}-${steps.heun}.yaml`);
  writeFileSync(path, stringify(spec));
  return path;
}

/** 2-3. Study throughput embedded with 1 and 2 processes, dense and pruned, against the numpy peer. */
async function study(uri: string | null, source: string) {
  const dir = mkdtempSync(join(tmpdir(), 'trajlab-bench-'));
  const rates: Record<string, number> = {};
  steadiness('study');
  freshPages('study');
  /** The figures of 1 and 2 processes and of the speed-up, from paired runs. */
  const addPaired = (runs: PairedRuns, trajectories: number, name: (workers: number) => string, detail: (s: number) => string, speedUp: string, what: string) => {
    for (const [workers, secs] of [[1, runs.one], [2, runs.two]] as const) {
      const s = median(secs);
      add({ name: name(workers), value: trajectories / s, unit: 'trajectories/s', detail: `${detail(s)} (runs: ${range(secs, (v) => v.toFixed(1))} s)`, command: 'pnpm bench study' });
    }
    add({
      name: speedUp,
      value: median(runs.speedUps),
      unit: 'x',
      detail: `speed-up of --workers 2 over --workers 1${what}: median of ${runs.speedUps.length} pairs of runs, one after the other (pairs: ${range(runs.speedUps)})`,
      command: 'pnpm bench study',
    });
    // Two cores give at most two CPU seconds per second: a run with two processes takes at least half its CPU time,
    // so the speed-up of a pair is at most 2 x (one process's wall time) / (the two processes' CPU time). What the
    // second process adds in CPU (its own start-up, a kernel slowed by the other core) lowers that bound; time a core
    // stands idle is what separates the speed-up from it.
    const bounds = runs.one.map((wall, i) => (2 * wall) / runs.cpuTwo[i]!);
    const cpu = (xs: number[]) => `${median(xs).toFixed(2)} s (runs: ${range(xs, (v) => v.toFixed(2))})`;
    // CPU beyond the wall time of a one-process run: its helper threads (V8's garbage collector and compiler, libuv's
    // file writes) on the core it leaves free; core time a two-process run leaves idle: 2 x its wall time - its CPU
    const helpers = runs.one.map((wall, i) => runs.cpuOne[i]! - wall);
    const idle = runs.two.map((wall, i) => 2 * wall - runs.cpuTwo[i]!);
    add({
      name: `${speedUp}, bound from CPU time`,
      value: median(bounds),
      unit: 'x',
      detail: `CPU seconds of every process of the run${what} (the shell's times): ${cpu(runs.cpuOne)} with --workers 1, ${cpu(runs.cpuTwo)} with --workers 2; two cores busy all the time would give 2 x the first's wall time / the second's CPU time (pairs: ${range(bounds)}). With --workers 1 the helper threads (garbage collector, compiler, file writes) already keep the other core busy ${cpu(helpers)} (CPU - wall); with --workers 2 the two cores stand idle ${cpu(idle)} (2 x wall - CPU)`,
      command: 'pnpm bench study',
    });
    // Amdahl's law: a run's start-up and finishing (f, the wall time of a run that computes almost nothing) stays on
    // one process; if all the rest split perfectly over two, one run's wall time w would become f + (w - f) / 2.
    const amdahl = runs.one.map((wall, i) => wall / (runs.startUp[i]! + (wall - runs.startUp[i]!) / 2));
    add({
      name: `${speedUp}, bound from start-up`,
      value: median(amdahl),
      unit: 'x',
      detail: `a run of the same study with 2 samples per config and one step per solver takes ${median(runs.startUp).toFixed(2)} s (runs: ${range(runs.startUp, (v) => v.toFixed(2))}) of the ${median(runs.one).toFixed(2)} s with --workers 1${what}; with only the rest split over two processes, perfectly, --workers 2 would give w / (f + (w - f) / 2) (pairs: ${range(amdahl)})`,
      command: 'pnpm bench study',
    });
  };
  for (const pruning of [false, true]) {
    const kind = pruning ? 'pruned' : 'dense';
    const runs = await pairedRuns(perfSpec(dir, uri, pruning), dir, kind, 5, startUpSpec(dir, uri, pruning));
    rates[`${kind}-1`] = 512 / median(runs.one);
    rates[`${kind}-2`] = 512 / median(runs.two);
    addPaired(
      runs,
      512,
      (workers) => `study, ${kind}, ${workers} process${workers > 1 ? 'es' : ''}`,
      (s) => `${source}; 512 trajectories (Euler 20 + Heun 10, 20 NFE each), ${s.toFixed(1)} s wall incl. start-up, ${((512 * 20) / s).toFixed(0)} denoiser evaluations/s`,
      `2 processes vs 1 (${kind})`,
      '',
    );
  }
  if (hasTaskset()) {
    // One process held to one core (taskset: its garbage collector and compiler threads too) against two processes on
    // both: how the work itself scales with cores, without what a one-process run already takes from the core it leaves
    // free (see the bound from CPU time)
    const spec = perfSpec(dir, uri, false);
    const pinned: number[] = [];
    const two: number[] = [];
    for (let r = 0; r < 3; r++) {
      pinned.push((await runOnce(spec, join(dir, `out-pinned-1-${r}`), 1, {}, true)).seconds);
      two.push(await runSeconds(spec, join(dir, `out-pinned-2-${r}`), 2));
    }
    const ratios = pinned.map((s, i) => s / two[i]!);
    add({
      name: '2 processes on two cores vs 1 process on one core (dense)',
      value: median(ratios),
      unit: 'x',
      detail: `the 512-trajectory study with --workers 1 held to one core by taskset (its helper threads too): ${median(pinned).toFixed(2)} s (runs: ${range(pinned, (v) => v.toFixed(2))}), then --workers 2 free on both cores: ${median(two).toFixed(2)} s (runs: ${range(two, (v) => v.toFixed(2))}); median of 3 pairs (pairs: ${range(ratios)})`,
      command: 'pnpm bench study',
    });
  }
  await timelines(perfSpec(dir, uri, false), dir);
  {
    // the same dense study with wasm's own matMul (TRAJLAB_BLAS=off), for comparison
    const spec = perfSpec(dir, uri, false);
    for (const workers of [1, 2]) {
      const s = await medianRun(spec, dir, 'wasm', workers, { TRAJLAB_BLAS: 'off' });
      rates[`wasm-${workers}`] = 512 / s;
      add({
        name: `study, dense, wasm's own matMul, ${workers} process${workers > 1 ? 'es' : ''}`,
        value: 512 / s,
        unit: 'trajectories/s',
        detail: `${source}; TRAJLAB_BLAS=off; ${s.toFixed(1)} s wall incl. start-up`,
        command: 'pnpm bench study',
      });
    }
  }
  {
    // the same dense study with every metric on (the spec's defaults), as a researcher runs it: what the metrics cost
    const spec = perfSpec(dir, uri, false, 256, true);
    const s = await medianRun(spec, dir, 'metrics', 2);
    add({
      name: 'study, dense, every metric, 2 processes',
      value: 512 / s,
      unit: 'trajectories/s',
      detail: `${source}; the same 512 trajectories with the spec's default metrics (KDE gain, nearest neighbours, PCA, D(x) filled in at every point): ${s.toFixed(1)} s wall incl. start-up, against ${(512 / rates['dense-2']!).toFixed(1)} s with metrics off`,
      command: 'pnpm bench study',
    });
  }
  // The same study with 4x the samples: fixed costs (start-up, aggregation, report) weigh a quarter as much.
  const largeRuns = await pairedRuns(perfSpec(dir, uri, false, 1024), dir, 'large', 3, startUpSpec(dir, uri, false));
  const large = { 1: median(largeRuns.one), 2: median(largeRuns.two) };
  addPaired(
    largeRuns,
    2048,
    (workers) => `study x4, dense, ${workers} process${workers > 1 ? 'es' : ''}`,
    (s) => `${source}; 2048 trajectories (1024 per config), ${s.toFixed(1)} s wall incl. start-up`,
    '2 processes vs 1 (dense, study x4)',
    ' on 2048 trajectories',
  );
  const largePruned = await medianRun(perfSpec(dir, uri, true, 1024), dir, 'large-pruned', 2);
  add({
    name: 'study x4, pruned, 2 processes',
    value: 2048 / largePruned,
    unit: 'trajectories/s',
    detail: `${source}; 2048 trajectories (1024 per config), ${largePruned.toFixed(1)} s wall incl. start-up`,
    command: 'pnpm bench study',
  });
  if (uri) {
    const { wall: w, loop: c } = numpyPeer(uri, 256);
    const best = Math.max(...Object.entries(rates).filter(([k]) => !k.startsWith('wasm')).map(([, v]) => v));
    add({ name: 'numpy peer (dense, float32, batch 32)', value: 512 / w, unit: 'trajectories/s', detail: `same study in plain numpy (its OpenBLAS, both cores): ${w.toFixed(2)} s for the whole process, ${c.toFixed(2)} s in its sampling loop`, command: 'python3 bench/numpy_peer.py <train-images.gz> 10000 256' });
    add({ name: 'trajlab (best) / numpy peer, whole process', value: best / (512 / w), unit: 'x', detail: 'study throughput ratio, both timed from process start to results (trajlab also writes Arrow shards, the summary and the report)', command: 'pnpm bench study' });
    add({ name: 'trajlab (best) / numpy peer, its loop alone', value: best / (512 / c), unit: 'x', detail: "trajlab's whole process against the peer's sampling loop without its start-up and data loading", command: 'pnpm bench study' });
    const wl = numpyPeer(uri, 1024).wall;
    add({ name: 'trajlab (2 processes) / numpy peer, study x4, whole process', value: wl / large[2], unit: 'x', detail: `2048 trajectories, dense: numpy ${wl.toFixed(1)} s, trajlab --workers 2 ${large[2].toFixed(1)} s`, command: 'pnpm bench study' });
    add({ name: 'trajlab (2 processes, pruned) / numpy peer, study x4, whole process', value: wl / largePruned, unit: 'x', detail: `2048 trajectories: numpy (dense) ${wl.toFixed(1)} s, trajlab --workers 2 with pruning ${largePruned.toFixed(1)} s`, command: 'pnpm bench study' });
  }
}

/** What a `trajlab run --trace` file says of its processes (seconds from the command's start). */
interface Timeline {
  /** Wall seconds from the command's start to the end of its report. */
  wall: number;
  /**
   * Per computing process: when its first batch began and its last one ended, the wall and CPU seconds its batches
   * took, and the seconds between one batch's end and the next one's start (queueing, with a distributed study).
   */
  processes: { first: number; last: number; busy: number; cpu: number; gaps: number }[];
  /** The aggregation and report after the last batch, in seconds. */
  finishing: number;
  /** Seconds the command spent folding shard files while shards still ran (its `fold` spans). */
  folding: number;
  /** The command's first and second batches, in seconds (its warm-up: how much longer the first took). */
  firstBatches: number[];
}

/** What a timeline (`run --trace` or `submit --watch --trace`) says, in seconds from its first event. */
function readTimeline(file: string): Timeline {
  const events = (JSON.parse(readFileSync(file, 'utf8')) as { traceEvents: TraceEvent[] }).traceEvents.filter((e) => e.ph === 'X');
  const t0 = Math.min(...events.map((e) => e.ts));
  const s = (us: number) => (us - t0) / 1e6;
  const end = (e: TraceEvent) => e.ts + e.dur!;
  const seconds = (es: TraceEvent[]) => es.reduce((n, e) => n + e.dur! / 1e6, 0);
  const allBatches = events.filter((e) => e.cat === 'batch');
  const processes = [...new Set(allBatches.map((e) => e.pid))].map((pid) => {
    const batches = allBatches.filter((e) => e.pid === pid).sort((a, b) => a.ts - b.ts);
    const gaps = batches.slice(1).reduce((n, e, i) => n + Math.max(0, e.ts - end(batches[i]!)) / 1e6, 0);
    return { first: s(batches[0]!.ts), last: s(Math.max(...batches.map(end))), busy: seconds(batches), cpu: batches.reduce((n, e) => n + Number(e.args!.cpu_ms) / 1e3, 0), gaps };
  });
  const finishing = events.filter((e) => e.cat === 'aggregation');
  const main = finishing[0]!.pid;
  const firstBatches = allBatches.filter((e) => e.pid === main).sort((a, b) => a.ts - b.ts).slice(0, 2).map((e) => e.dur! / 1e6);
  return { wall: s(Math.max(...finishing.map(end))), processes, finishing: seconds(finishing), folding: seconds(events.filter((e) => e.cat === 'fold')), firstBatches };
}

/** A timeline's computing processes together: their batches' wall and CPU seconds, and their waits between batches. */
function batchFigures(file: string): { wall: number; cpu: number; gaps: number } {
  const { processes } = readTimeline(file);
  const sum = (k: 'busy' | 'cpu' | 'gaps') => processes.reduce((n, p) => n + p[k], 0);
  return { wall: sum('busy'), cpu: sum('cpu'), gaps: sum('gaps') };
}

/**
 * Where a `--workers 2` run's time goes, from `--trace` (three rounds: a traced run with one process, one with two, and
 * two one-process runs at the same time): how much longer the shards' computing takes with two processes than with one,
 * how much of that the machine itself costs two processes computing side by side, and the wall time outside the part
 * where both compute.
 */
async function timelines(spec: string, dir: string) {
  const traced = async (tag: string, workers: number) => {
    const file = join(dir, `${tag}.trace.json`);
    const res = await run(['run', spec, '--out', join(dir, `out-${tag}`), '--workers', String(workers), '--quiet', '--trace', file]);
    if (res.code !== 0) throw new Error(res.stderr);
    return readTimeline(file);
  };
  const busy = (t: Timeline) => t.processes.reduce((n, p) => n + p.busy, 0);
  const slower: number[] = [];
  const sideBySide: number[] = [];
  const outside: { start: number; alone: number; finishing: number; total: number }[] = [];
  const folding: number[] = [];
  const warmUp: number[] = [];
  for (let r = 0; r < 3; r++) {
    const one = await traced(`timeline-1-${r}`, 1);
    const two = await traced(`timeline-2-${r}`, 2);
    const [a, b] = await Promise.all([traced(`timeline-a-${r}`, 1), traced(`timeline-b-${r}`, 1)]);
    slower.push(busy(two) / busy(one));
    folding.push(two.folding);
    // a one-process run's first batch against its second (the same config, the same number of shards)
    warmUp.push(one.firstBatches[0]! - one.firstBatches[1]!);
    sideBySide.push((busy(a) + busy(b)) / (2 * busy(one)));
    const bothFrom = Math.max(...two.processes.map((p) => p.first));
    const bothTo = Math.min(...two.processes.map((p) => p.last));
    const lastBatch = Math.max(...two.processes.map((p) => p.last));
    outside.push({ start: bothFrom, alone: lastBatch - bothTo, finishing: two.finishing, total: two.wall - (bothTo - bothFrom) });
  }
  const pct = (x: number) => `${((x - 1) * 100).toFixed(0)}%`;
  add({
    name: '2 processes vs 1 (dense), computing time',
    value: median(slower),
    unit: 'x',
    detail: `the 512-trajectory study's batches (their spans in trajlab run --trace) took this much longer in all with --workers 2 than with --workers 1 (median of 3 pairs: ${range(slower)}); two --workers 1 runs at the same time take ${median(sideBySide).toFixed(2)}x as long for theirs as one alone (${range(sideBySide)}): ${pct(median(sideBySide))} is what the machine costs two processes computing side by side. The rest: each process warms up on its own (a one-process run's first batch takes ${(median(warmUp) * 1000).toFixed(0)} ms longer than its second, ${range(warmUp.map((v) => v * 1000), (v) => v.toFixed(0))} ms), and with two processes the command folds finished shards' files between its steps (${(median(folding) * 1000).toFixed(0)} ms in all, its fold spans: ${range(folding.map((v) => v * 1000), (v) => v.toFixed(0))} ms), which one process does in its aggregation instead`,
    command: 'pnpm bench study',
  });
  const m = (k: 'start' | 'alone' | 'finishing' | 'total') => median(outside.map((o) => o[k]));
  add({
    name: '2 processes (dense), time outside both computing',
    value: m('total'),
    unit: 's',
    detail: `of a --workers 2 run of the 512-trajectory study (from --trace, median of 3): until both processes compute ${m('start').toFixed(2)} s (start-up), one computing alone at the end ${m('alone').toFixed(2)} s, aggregation and report ${m('finishing').toFixed(2)} s`,
    command: 'pnpm bench study',
  });
}

/** Extra round trip of the simulated remote object store in `pnpm bench distributed`, in ms. */
const REMOTE_LATENCY_MS = 30;
/** Jobs per shard process of the batched distributed runs: batches of up to 4 shards (the perf study's shards are 32 samples, 4 per batch). */
const BATCHED_JOBS_PER_PROCESS = 8;

/** 4. Pipeline overhead: the distributed run (Redis, S3 server, 2 workers, aggregator) against the embedded run. */
async function distributed(uri: string | null, source: string) {
  steadiness('distributed');
  const { childrenOf, startRedis, startService } = await import('../test/services.js');
  /** CPU seconds a process has used so far (Linux /proc; NaN elsewhere or once it has exited). */
  const cpuSeconds = (pid: number) => {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return Number.NaN;
    }
  };
  /** CPU seconds of each service's child processes (shard processes, the sandboxed aggregation). */
  const childrenCpu = (pids: number[]) => pids.map((pid) => childrenOf(pid).reduce((a, c) => a + cpuSeconds(c), 0));
  const { startLatencyProxy, startS3 } = await import('../test/s3-server.js');
  const dir = mkdtempSync(join(tmpdir(), 'trajlab-dist-'));
  /**
   * Seconds of `submit --watch` of `spec` on a fresh Redis, 2 workers and the aggregator, writing to a fresh S3 server
   * (over HTTP; with `latencyMs`, behind a proxy that delays every answer by that much, as a store across a network
   * would) or, with `store` 'filesystem', to a directory they share; `workerEnv` is added to the workers'.
   */
  const distributedRun = async (specPath: string, tag: string, store: 's3' | 'filesystem', workerEnv: Record<string, string> = {}, latencyMs = 0) => {
    const [redis, s3] = await Promise.all([startRedis(), startS3()]);
    const proxy = latencyMs > 0 ? await startLatencyProxy(s3.endpoint, latencyMs) : null;
    const env = { ...s3.env, ...(proxy ? { AWS_ENDPOINT_URL_S3: proxy.endpoint } : {}), REDIS_URL: redis.url };
    const services = [startService('worker', { ...env, ...workerEnv }), startService('worker', { ...env, ...workerEnv }), startService('aggregator', env)];
    // deployed workers wait for work with their child processes already started and warmed up: so do these before
    // the submit
    await Promise.all(services.map((x) => x.waitFor(/process(\(es\))? started/)));
    await Promise.all(services.slice(0, 2).map((x) => x.waitFor(/warmed up in/)));
    await services[2]!.waitFor(/\[aggregation \d+\] warmed up in/);
    const out = store === 's3' ? `s3://${s3.bucket}/${tag}` : join(dir, `dist-${tag}`);
    // the S3 server runs in this process, which does nothing else meanwhile: its CPU time is this process's
    const cpu0 = process.cpuUsage();
    const before = childrenCpu(services.map((x) => x.proc.pid!));
    const traceFile = join(dir, `dist-${tag}.trace.json`);
    const sub = await run(['submit', specPath, '--out', out, '--watch', '--trace', traceFile], env);
    const cpu = process.cpuUsage(cpu0);
    const after = childrenCpu(services.map((x) => x.proc.pid!));
    if (sub.code !== 0) throw new Error(sub.stderr);
    await Promise.all(services.map((x) => x.stop('SIGTERM')));
    await Promise.all([redis.stop(), s3.stop(), proxy?.stop()]);
    // CPU used during the study: the two workers' shard processes, and the aggregator's sandboxed process
    const used = (i: number) => after[i]! - before[i]!;
    return { seconds: sub.seconds, s3Cpu: (cpu.user + cpu.system) / 1e6, shardCpu: used(0) + used(1), aggregationCpu: used(2), batches: batchFigures(traceFile) };
  };
  /**
   * Median seconds of `pairs` embedded `run --workers 2` (shard by shard, TRAJLAB_SHARD_BATCH=off, as the workers
   * compute with their default 2 jobs per process) and of as many distributed runs of `spec` (and, with
   * `withoutOverlap`, as many with TRAJLAB_JOBS_PER_PROCESS=1), interleaved so that the machine's drift hits them alike.
   * `latencyMs`: see distributedRun. With `batched`, both compute in batches: the embedded runs with their default
   * batching, the workers holding BATCHED_JOBS_PER_PROCESS jobs per process. `pairs` (default 3): the 512-trajectory
   * comparisons take SHORT_PAIRS, whose ~3 s runs a VM's hiccup can move by tens of percent.
   */
  const compare = async (
    spec: string,
    tag: string,
    { store, withoutOverlap = false, latencyMs = 0, batched = false, pairs = 3 }: { store: 's3' | 'filesystem'; withoutOverlap?: boolean; latencyMs?: number; batched?: boolean; pairs?: number },
  ) => {
    const embedded: number[] = [];
    const dist: number[] = [];
    const serial: number[] = [];
    const s3Cpu: number[] = [];
    const shardCpu: number[] = [];
    const aggregationCpu: number[] = [];
    // both runs' timelines: the share of a core their batches got, and the distributed workers' wait between jobs
    const shares: { embedded: number; dist: number; gaps: number }[] = [];
    for (let r = 0; r < pairs; r++) {
      // shard by shard, as the workers compute with their default 2 jobs per process (batched: both in batches): what
      // the pipeline adds to the same work
      const embTrace = join(dir, `emb-${tag}-${r}.trace.json`);
      const emb = await run(['run', spec, '--out', join(dir, `emb-${tag}-${r}`), '--workers', '2', '--quiet', '--trace', embTrace], batched ? {} : { TRAJLAB_SHARD_BATCH: 'off' });
      if (emb.code !== 0) throw new Error(emb.stderr);
      embedded.push(emb.seconds);
      const d = await distributedRun(spec, `${tag}-${r}`, store, batched ? { TRAJLAB_JOBS_PER_PROCESS: String(BATCHED_JOBS_PER_PROCESS) } : {}, latencyMs);
      const e = batchFigures(embTrace);
      shares.push({ embedded: e.cpu / e.wall, dist: d.batches.cpu / d.batches.wall, gaps: d.batches.gaps });
      dist.push(d.seconds);
      s3Cpu.push(d.s3Cpu);
      shardCpu.push(d.shardCpu);
      aggregationCpu.push(d.aggregationCpu);
      if (withoutOverlap) serial.push((await distributedRun(spec, `${tag}-serial-${r}`, store, { TRAJLAB_JOBS_PER_PROCESS: '1' }, latencyMs)).seconds);
    }
    return { embedded, dist, serial, e: median(embedded), d: median(dist), s: withoutOverlap ? median(serial) : NaN, s3Cpu: median(s3Cpu), shardCpu: median(shardCpu), aggregationCpu: median(aggregationCpu), shares };
  };
  /**
   * Adds the overhead of the distributed runs `d` (seconds) over the embedded ones `e` run just before each as a figure:
   * the median of the pairs' overheads, so that a drift of the machine's speed hits both runs of a pair alike.
   */
  const addOverhead = (name: string, d: number[], e: number[], detail: string) => {
    const overheads = d.map((x, i) => (100 * (x - e[i]!)) / e[i]!);
    add({ name: `distributed vs embedded (2 workers each)${name}`, value: median(overheads), unit: '% overhead', detail: `${source}; ${detail} (median of ${overheads.length} pairs: ${overheads.map((o) => o.toFixed(1)).join(', ')} %)`, command: 'pnpm bench distributed' });
  };
  const short = await compare(perfSpec(dir, uri, false), 'short', { store: 's3', pairs: SHORT_PAIRS });
  addOverhead('', short.dist, short.embedded, `submit --watch ${short.d.toFixed(1)} s (Redis, S3 server over HTTP, 2 worker processes, aggregator, report) vs run --workers 2 shard by shard ${short.e.toFixed(1)} s, both incl. start-up; the S3 server used ${short.s3Cpu.toFixed(2)} s of CPU`);
  // the same on the 2048-trajectory study: the fixed costs against 4x the compute
  const largeSpec = perfSpec(dir, uri, false, 1024);
  const large = await compare(largeSpec, 'large', { store: 's3', withoutOverlap: true });
  addOverhead(
    ', study x4',
    large.dist,
    large.embedded,
    `2048 trajectories: submit --watch ${large.d.toFixed(1)} s vs run --workers 2 shard by shard ${large.e.toFixed(1)} s; CPU during the study: S3 server ${large.s3Cpu.toFixed(2)} s, shard processes ${large.shardCpu.toFixed(1)} s, aggregation ${large.aggregationCpu.toFixed(2)} s`,
  );
  {
    // where the difference goes, from both runs' timelines: a batch whose process is off its core (the S3 server, the
    // aggregator, the workers' main processes and Redis run on the same two cores) gets less CPU than its wall time
    const pct = (xs: number[]) => `${(100 * median(xs)).toFixed(0)}% (${range(xs.map((x) => 100 * x), (v) => v.toFixed(0))})`;
    const gaps = large.shares.map((x) => x.gaps);
    add({
      name: 'distributed (2 workers), study x4, CPU share of the batches',
      value: 100 * median(large.shares.map((x) => x.dist)),
      unit: '%',
      detail: `${source}; from the 2048-trajectory comparison's timelines (submit --watch --trace and run --trace, 3 pairs): while a worker computed a batch its process got ${pct(large.shares.map((x) => x.dist))} of a core, against ${pct(large.shares.map((x) => x.embedded))} for run --workers 2's processes; between one job's compute and the next the two workers waited ${median(gaps).toFixed(2)} s in all (${range(gaps, (v) => v.toFixed(2))} s): the distributed run loses its time to what shares the cores (S3 server, aggregator, the services' own processes), not to queueing`,
      command: 'pnpm bench distributed',
    });
  }
  // the same workers holding one shard at a time: each waits for the store between shards
  addOverhead(', study x4, TRAJLAB_JOBS_PER_PROCESS=1', large.serial, large.embedded, `2048 trajectories, no overlap of the store with the compute: submit --watch ${large.s.toFixed(1)} s vs run --workers 2 shard by shard ${large.e.toFixed(1)} s (with the default 2 jobs per process: ${large.d.toFixed(1)} s)`);
  // workers that hold enough jobs to compute them in batches, against the embedded run's own batches
  const largeBatched = await compare(largeSpec, 'large-batched', { store: 's3', batched: true });
  addOverhead(
    `, study x4, batches (TRAJLAB_JOBS_PER_PROCESS=${BATCHED_JOBS_PER_PROCESS})`,
    largeBatched.dist,
    largeBatched.embedded,
    `2048 trajectories, both computing shards in batches: submit --watch ${largeBatched.d.toFixed(1)} s with each shard process holding ${BATCHED_JOBS_PER_PROCESS} jobs (batches of up to ${BATCHED_JOBS_PER_PROCESS / 2} shards) vs run --workers 2 with its batches ${largeBatched.e.toFixed(1)} s (shard by shard: distributed ${large.d.toFixed(1)} s, embedded ${large.e.toFixed(1)} s)`,
  );
  // a store across a network: every S3 answer 30 ms late (the round trip of a remote object store); holding a second
  // shard hides it behind the compute
  const remote = await compare(largeSpec, 'remote', { store: 's3', withoutOverlap: true, latencyMs: REMOTE_LATENCY_MS });
  addOverhead(`, study x4, S3 ${REMOTE_LATENCY_MS} ms away`, remote.dist, remote.embedded, `2048 trajectories, every S3 answer ${REMOTE_LATENCY_MS} ms late: submit --watch ${remote.d.toFixed(1)} s vs run --workers 2 shard by shard ${remote.e.toFixed(1)} s (local files)`);
  addOverhead(
    `, study x4, S3 ${REMOTE_LATENCY_MS} ms away, TRAJLAB_JOBS_PER_PROCESS=1`,
    remote.serial,
    remote.embedded,
    `2048 trajectories, every S3 answer ${REMOTE_LATENCY_MS} ms late, no overlap of the store with the compute: submit --watch ${remote.s.toFixed(1)} s (with the default 2 jobs per process: ${remote.d.toFixed(1)} s)`,
  );
  // without the S3 server (outputs on a filesystem the services share, as on a cluster's network filesystem): what the
  // queue, the workers and the aggregator cost by themselves
  const shortFs = await compare(perfSpec(dir, uri, false), 'short-fs', { store: 'filesystem', pairs: SHORT_PAIRS });
  addOverhead(', shared filesystem', shortFs.dist, shortFs.embedded, `512 trajectories, outputs in a shared directory instead of S3: submit --watch ${shortFs.d.toFixed(1)} s vs run --workers 2 shard by shard ${shortFs.e.toFixed(1)} s`);
  const largeFs = await compare(largeSpec, 'large-fs', { store: 'filesystem' });
  addOverhead(
    ', study x4, shared filesystem',
    largeFs.dist,
    largeFs.embedded,
    `2048 trajectories, outputs in a shared directory instead of S3: submit --watch ${largeFs.d.toFixed(1)} s vs run --workers 2 shard by shard ${largeFs.e.toFixed(1)} s; CPU during the study: shard processes ${largeFs.shardCpu.toFixed(1)} s, aggregation ${largeFs.aggregationCpu.toFixed(2)} s`,
  );
  // What S3 itself costs the two cores: the 2048-trajectory study's shard files PUT and read back one request at a
  // time, with no compute beside them (the server's CPU is this process's, the client's is its own process's)
  const studyDir = readdirSync(join(dir, 'emb-large-0')).find((d) => d.startsWith('perf-'))!;
  type Cost = { puts: number; gets: number; bytes: number; putCpuMs: number; getCpuMs: number; serverMs: number };
  const costs: Cost[] = [];
  // the same requests sent by the AWS SDK (TRAJLAB_S3_CLIENT=sdk, as for AWS's own endpoints): what the store's own
  // requests save
  const sdkCosts: Cost[] = [];
  for (let r = 0; r < 3; r++) {
    for (const [client, into] of [['builtin', costs], ['sdk', sdkCosts]] as const) {
      const s3 = await startS3();
      const cpu0 = process.cpuUsage();
      // a process of its own, waited for asynchronously: this process's event loop serves its requests (the AWS SDK's
      // Node version warning on its stderr is left out)
      const probe = await probeOutput('s3-requests', [join(dir, 'emb-large-0', studyDir), `s3://${s3.bucket}/cost-${r}`], { ...s3.env, TRAJLAB_S3_CLIENT: client }, true);
      const cpu = process.cpuUsage(cpu0);
      await s3.stop();
      into.push({ ...(JSON.parse(probe) as Omit<Cost, 'serverMs'>), serverMs: (cpu.user + cpu.system) / 1000 });
    }
  }
  const c0 = costs[0]!;
  const requests = c0.puts + c0.gets;
  const perRequest = (cs: Cost[]) => ({
    server: median(cs.map((c) => c.serverMs / requests)),
    put: median(cs.map((c) => c.putCpuMs / c.puts)),
    get: median(cs.map((c) => c.getCpuMs / c.gets)),
  });
  const { server, put, get } = perRequest(costs);
  const viaSdk = perRequest(sdkCosts);
  const total = (server * requests + put * c0.puts + get * c0.gets) / 1000;
  const detail = `the 2048-trajectory study's ${c0.puts} shard files (${(c0.bytes / 2 ** 20).toFixed(0)} MiB) PUT and its ${c0.gets} Arrow files read back, one request at a time, nothing else running (median of 3)`;
  add({ name: 'S3 request cost, server (s3rver)', value: server, unit: 'ms CPU per request', detail: `${detail}; ${viaSdk.server.toFixed(2)} ms when the AWS SDK sends them`, command: 'pnpm bench distributed' });
  for (const [name, ours, theirs] of [['PUT', put, viaSdk.put], ['GET', get, viaSdk.get]] as const) {
    add({ name: `S3 request cost, client ${name}`, value: ours, unit: 'ms CPU per request', detail: `${detail}; the services' store (its own SigV4 requests over Node's HTTP client)`, command: 'pnpm bench distributed' });
    add({ name: `S3 request cost, client ${name}, AWS SDK`, value: theirs, unit: 'ms CPU per request', detail: `the same requests sent by the AWS SDK v3 (TRAJLAB_S3_CLIENT=sdk, as for AWS's own endpoints): ${(theirs / ours).toFixed(1)}x the store's own`, command: 'pnpm bench distributed' });
  }
  // How fast the aggregator's early fold reads over a store with latency: the 2048-trajectory study's files, all
  // complete at once, folded through a proxy that answers 30 ms late, one file at a time and with the default
  // read-ahead; the two workers make the files at about (files / embedded run's wall time) per second
  {
    const s3 = await startS3();
    const proxy = await startLatencyProxy(s3.endpoint, REMOTE_LATENCY_MS);
    const out = `s3://${s3.bucket}/fold`;
    const root = join(dir, 'emb-large-0');
    const direct = openStore(out, s3.env);
    for (const f of readdirSync(join(root, studyDir), { recursive: true }).map(String)) {
      if (f === 'study.json' || (f.startsWith('shards') && f.endsWith('.arrow'))) await direct.put(`${studyDir}/${f}`, new Uint8Array(readFileSync(join(root, studyDir, f))));
    }
    const doc = JSON.parse(readFileSync(join(root, studyDir, 'study.json'), 'utf8')) as { plan: { configs: { configId: string; shards: string[] }[] } };
    const remoteEnv = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
    const foldSeconds = async (readAhead: number) => {
      const early = new EarlyFolds({ openStore: (o) => openStore(o, remoteEnv), readAhead });
      const t0 = performance.now();
      for (const c of doc.plan.configs) for (const shard of c.shards) early.shardDone(studyDir, c.configId, shard, out);
      const files = await early.caughtUp(studyDir);
      const seconds = (performance.now() - t0) / 1000;
      await early.take(studyDir, out);
      return { files, seconds };
    };
    const times: Record<'one' | 'ahead', number[]> = { one: [], ahead: [] };
    let files = 0;
    for (let r = 0; r < 3; r++) {
      const one = await foldSeconds(1);
      const ahead = await foldSeconds(8);
      files = ahead.files;
      if (one.files !== files) throw new Error(`early fold: ${one.files} files folded one at a time, ${files} with read-ahead`);
      times.one.push(one.seconds);
      times.ahead.push(ahead.seconds);
    }
    await proxy.stop();
    await s3.stop();
    const produced = files / large.e;
    const oneAtATime = files / median(times.one);
    add({
      name: `early fold over S3 ${REMOTE_LATENCY_MS} ms away`,
      value: files / median(times.ahead),
      unit: 'shard files/s',
      detail: `the aggregator's fold of the 2048-trajectory study's ${files} shard files while a study runs, every S3 answer ${REMOTE_LATENCY_MS} ms late: ${median(times.ahead).toFixed(2)} s with 8 files requested ahead (EarlyFolds' default), ${median(times.one).toFixed(2)} s one file at a time (${oneAtATime.toFixed(0)} files/s; median of 3 each); run --workers 2 makes them at ${produced.toFixed(0)} files/s`,
      command: 'pnpm bench distributed',
    });
  }
  add({
    name: 'S3 request cost, study x4',
    value: (100 * total) / (2 * large.e),
    unit: "% of the embedded run's CPU time",
    detail: `server and clients together: ${total.toFixed(2)} s of CPU for the study's ${requests} requests, against the ${(2 * large.e).toFixed(1)} s the two cores give run --workers 2 (${large.e.toFixed(1)} s wall): what the distributed run gives up to S3 on the same cores, before any queueing`,
    command: 'pnpm bench distributed',
  });
}

/**
 * The S3 client's side of the request-cost measurement (`bench/run.ts s3-requests <dir> <s3 uri>`, in a process of its
 * own): PUTs every shard file of the finished study under `dir` (as the workers upload them), then GETs its Arrow files
 * (as the aggregator reads them), through the store the services use. Prints the counts and this process's CPU
 * milliseconds for each half as JSON.
 */
async function s3RequestsProbe(dir: string, uri: string) {
  const shards = join(dir, 'shards');
  const files = readdirSync(shards, { recursive: true })
    .map(String)
    .filter((f) => /\.(arrow|json)$/.test(f))
    .sort();
  const bodies = files.map((f) => new Uint8Array(readFileSync(join(shards, f))));
  const store = openStore(uri);
  await store.put('warm-up', new Uint8Array(1)); // the SDK's and the connection's one-time costs stay out of the figures
  const cpuMs = (since: NodeJS.CpuUsage) => {
    const c = process.cpuUsage(since);
    return (c.user + c.system) / 1000;
  };
  const putStart = process.cpuUsage();
  for (let i = 0; i < files.length; i++) await store.put(`shards/${files[i]}`, bodies[i]!);
  const putCpuMs = cpuMs(putStart);
  const read = files.filter((f) => f.endsWith('.arrow'));
  const getStart = process.cpuUsage();
  for (const f of read) await store.get(`shards/${f}`);
  const getCpuMs = cpuMs(getStart);
  const bytes = bodies.reduce((a, b) => a + b.length, 0);
  process.stdout.write(`${JSON.stringify({ puts: files.length, gets: read.length, bytes, putCpuMs, getCpuMs })}\n`);
}

/** 5. Aggregator throughput and peak RSS on 1e7 synthetic step rows (101 shards x ~100k rows), in a process of its own. */
async function aggregator() {
  const dir = mkdtempSync(join(tmpdir(), 'trajlab-agg-'));
  const meta = { version: 'bench', studyId: 'agg-0000000000', spec: '{}' };
  const P = 101;
  const perShard = 990;
  const shards = 101;
  const rows = perShard * P;
  const z = new Float32Array(rows).map((_, i) => Math.abs(Math.sin(i)) + 1e-3);
  for (let s = 0; s < shards; s++) {
    const cols: Record<string, ColumnData> = {
      config_id: { values: new Array(rows).fill('c') },
      solver: { values: new Array(rows).fill('euler') },
      schedule: { values: new Array(rows).fill('polynomial') },
      steps: { values: new Int32Array(rows).fill(P - 1) },
      sample: { values: Int32Array.from({ length: rows }, (_, j) => s * perShard + Math.floor(j / P)) },
      step: { values: Int32Array.from({ length: rows }, (_, j) => j % P) },
      sigma: { values: Float64Array.from({ length: rows }, (_, j) => 80 * 0.9 ** (j % P)) },
      nfe: { values: Int32Array.from({ length: rows }, (_, j) => j % P) },
    };
    for (const c of STEPS_COLUMNS.slice(8)) cols[c.name] = { values: c.kind === 'float64' ? Float64Array.from(z) : z };
    writeFileSync(join(dir, `steps-${s}.arrow`), toIpcFile(buildTable(STEPS_COLUMNS, makeSchema(STEPS_COLUMNS, 1, meta), rows, 1, cols)));
  }
  // one tiny samples file, read for every shard (the aggregator reads samples once per shard as well)
  const sCols: Record<string, ColumnData> = {
    config_id: { values: ['c'] }, solver: { values: ['euler'] }, schedule: { values: ['polynomial'] }, steps: { values: Int32Array.of(P - 1) },
    sample: { values: Int32Array.of(0) }, nfe_total: { values: Int32Array.of(P - 1) }, final: { values: Float32Array.of(0) }, nn_point: { values: Float32Array.of(0) },
  };
  for (const c of SAMPLES_COLUMNS) if (!sCols[c.name]) sCols[c.name] = c.kind === 'int32' ? { values: Int32Array.of(0) } : { values: Float64Array.of(1) };
  writeFileSync(join(dir, 'samples.arrow'), toIpcFile(buildTable(SAMPLES_COLUMNS, makeSchema(SAMPLES_COLUMNS, 1, meta), 1, 1, sCols)));
  // the aggregation itself runs in processes of its own (their peak RSS is the aggregator's alone), over the first
  // quarter of the shards and over all of them: memory that does not grow with rows extrapolates flat to 1e8 rows
  const measured: { rows: number; secs: number; rss: number }[] = [];
  for (const count of [Math.ceil(shards / 4), shards]) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'aggregate-files', dir, String(count), String(rows), String(P)], { encoding: 'utf8', cwd: REPO });
    measured.push({ rows: rows * count, ...(JSON.parse(out.trim().split('\n').pop()!) as { secs: number; rss: number }) });
  }
  const [small, large] = measured as [(typeof measured)[0], (typeof measured)[0]];
  const perRow = Math.max(0, (large.rss - small.rss) / (large.rows - small.rows));
  const at1e8 = large.rss + perRow * (1e8 - large.rows);
  add({ name: 'aggregator throughput', value: large.rows / large.secs, unit: 'step rows/s', detail: `${(large.rows / 1e6).toFixed(1)}M rows in ${large.secs.toFixed(1)} s`, command: 'pnpm bench aggregator' });
  add({ name: 'aggregator peak RSS', value: large.rss, unit: 'MiB', detail: `peak of a process that aggregated ${(large.rows / 1e6).toFixed(1)}M rows (${small.rss.toFixed(0)} MiB for ${(small.rows / 1e6).toFixed(1)}M)`, command: 'pnpm bench aggregator' });
  add({ name: 'aggregator peak RSS extrapolated to 1e8 rows', value: at1e8, unit: 'MiB', detail: `linear in rows through the two measurements (${(perRow * 1e6).toFixed(1)} MiB per million rows)`, command: 'pnpm bench aggregator' });
}

/** The aggregation alone, in this process, over the first `count` generated shards; prints its time and peak RSS. */
async function aggregateFiles(dir: string, count: number, rows: number, P: number) {
  const meta = { version: 'bench', studyId: 'agg-0000000000', spec: '{}' };
  const stepsKeys = Array.from({ length: count }, (_, s) => `steps-${s}.arrow`);
  const samplesKeys = stepsKeys.map(() => 'samples.arrow');
  const t0 = performance.now();
  await aggregateShards([{ configId: 'c', solver: 'euler', schedule: 'polynomial', steps: P - 1, role: 'study', nfe: P - 1, samplesKeys, stepsKeys }], async (k) => new Uint8Array(readFileSync(join(dir, k))), meta);
  const secs = (performance.now() - t0) / 1000;
  process.stdout.write(`${JSON.stringify({ secs, rss: process.resourceUsage().maxRSS / 1024, rows: rows * count })}\n`);
}

/** 6. Training throughput of `trajlab train`'s networks: native products, wasm's with the transposed-operand fix, plain wasm. */
async function training(data: Dataset, source: string) {
  const dir = mkdtempSync(join(tmpdir(), 'trajlab-bench-train-'));
  const native = nativeMatMulActive();
  const mlp: Architecture = { arch: 'mlp', width: 512, depth: 4, embed: 64 };
  const cases: { label: string; arch: Architecture; batch: number; steps: number; patches: boolean; blas: boolean }[] = [
    ...(native ? [{ label: 'MLP 512x4, batch 128, native sgemm', arch: mlp, batch: 128, steps: 60, patches: true, blas: true }] : []),
    ...(native && data.image ? [{ label: 'U-Net 16 channels, 2 levels, batch 32, native sgemm', arch: { arch: 'unet', channels: 16, levels: 2, embed: 64 } as Architecture, batch: 32, steps: 20, patches: true, blas: true }] : []),
    { label: 'MLP 512x4, batch 128, wasm + transposed operands', arch: mlp, batch: 128, steps: 60, patches: true, blas: false },
    { label: 'MLP 512x4, batch 128, plain wasm BatchMatMul', arch: mlp, batch: 128, steps: 30, patches: false, blas: false },
  ];
  for (const c of cases) {
    if (!c.blas) uninstallNativeMatMul();
    const rates: number[] = [];
    await trainDenoiser(
      data,
      { architecture: c.arch, parameterization: 'edm', noiseInput: 'edm', sigmaData: 0.5, pMean: -1.2, pStd: 1.2, steps: c.steps, batchSize: c.batch, learningRate: 1e-3, ema: 0.999, logEvery: 5, checkpointEvery: 0, seed: 0, kernelPatches: c.patches },
      new FsStore(join(dir, c.label.replace(/[^a-z0-9]+/gi, '-'))),
      { onLog: (p) => rates.push(p.stepsPerSecond) },
    );
    const rate = median(rates.slice(1)); // the first window includes compilation and warm-up
    add({ name: `train ${c.label}`, value: rate, unit: 'steps/s', detail: `${source}; ${(rate * c.batch).toFixed(0)} examples/s, median over windows of 5 steps`, command: 'pnpm bench train' });
  }
}

function machine(): string {
  return `${cpus().length} x ${cpus()[0]?.model.trim()}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, transparent huge pages ${transparentHugePages() ?? 'absent'}, Node ${process.versions.node}, backend ${describeBackend(backend)}`;
}

function writeReadme(results: { machine: string; date: string; figures: Figure[] }) {
  const path = join(REPO, 'README.md');
  const text = readFileSync(path, 'utf8');
  const table = [
    `Measured by \`pnpm bench\` on ${results.machine}, ${results.date} (medians; full figures in bench/results.json).`,
    '',
    '| benchmark | value | detail | command |',
    '| --- | --- | --- | --- |',
    ...results.figures.map((f) => `| ${f.name} | ${f.value.toPrecision(3)} ${f.unit} | ${f.detail} | \`${f.command}\` |`),
  ].join('\n');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  if (!text.includes(start)) return;
  writeFileSync(path, `${text.slice(0, text.indexOf(start) + start.length)}\n${table}\n${text.slice(text.indexOf(end))}`);
}

const SECTIONS = ['kernel', 'pruning', 'study', 'aggregator', 'distributed', 'train'] as const;
if (process.argv[2] === 'aggregate-files') {
  const [dir, count, rows, P] = process.argv.slice(3);
  await aggregateFiles(dir!, Number(count), Number(rows), Number(P));
  process.exit(0);
}
if (process.argv[2] === 's3-requests') {
  await s3RequestsProbe(process.argv[3]!, process.argv[4]!);
  process.exit(0);
}
if (process.argv[2] === 'kernel-probe') {
  await initBackend('auto');
  await runKernelProbe(dataset());
  process.exit(0);
}
const requested = process.argv.slice(2);
const unknown = requested.filter((r) => !(SECTIONS as readonly string[]).includes(r));
if (unknown.length) throw new Error(`unknown benchmark(s) ${unknown.join(', ')}; choose from ${SECTIONS.join(', ')}`);
if (requested.length !== 1) {
  // each part in a fresh process, one after the other: no part's memory (peak RSS, wasm heap) or state leaks into the next
  for (const section of requested.length ? requested : SECTIONS) {
    execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), section], { stdio: 'inherit', cwd: REPO });
  }
  process.exit(0);
}
const backend = await initBackend('auto');
log(`backend ${describeBackend(backend)}`);
const section = requested[0]!;
if (section === 'kernel') await kernel(dataset());
if (section === 'pruning') await pruning(dataset());
if (section === 'study') await study(existsSync(FMNIST) ? FMNIST : null, SOURCE);
if (section === 'aggregator') await aggregator();
if (section === 'distributed') await distributed(existsSync(FMNIST) ? FMNIST : null, SOURCE);
if (section === 'train') await training(dataset(), SOURCE);
// merge with earlier runs of other benchmarks (a partial run replaces only the figures it measured)
const previous = existsSync(join(REPO, 'bench/results.json')) ? (JSON.parse(readFileSync(join(REPO, 'bench/results.json'), 'utf8')) as { figures: Figure[] }).figures : [];
const merged = [...previous.filter((p) => !figures.some((f) => f.name === p.name)), ...figures];
const results = { machine: machine(), date: new Date().toISOString().slice(0, 10), figures: merged };
mkdirSync(join(REPO, 'bench'), { recursive: true });
writeFileSync(join(REPO, 'bench/results.json'), `${JSON.stringify(results, null, 2)}\n`);
writeReadme(results);
log('wrote bench/results.json');
