import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { AllocatorTuner } from './allocator.js';
import { envChoice } from './env-choice.js';

/**
 * Native matrix products for the wasm backend. Node's WebAssembly has no threads and 128-bit SIMD only, so wasm's
 * matMul runs at a fraction of what one core can do; where the optional binding (native/trajlab_blas.c with
 * native/stable_gemm.c) was built at install (scripts/build-native.mjs), the wasm backend's BatchMatMul and
 * _FusedMatMul kernels call its sgemm directly on the tensors' wasm-heap memory (no copies). Everything else stays in
 * wasm.
 *
 * Bits: the native product computes every element as one sequential chain of fused multiply-adds over the inner
 * dimension (stable_gemm.h), so a row's bits never depend on the rows computed with it (the batch, hence the shard
 * size), on the thread count (TRAJLAB_BLAS_THREADS), or on the instruction set (AVX-512, AVX2 + FMA, or the portable
 * C path: TRAJLAB_BLAS_ISA): the same bits on every machine that runs it. A self-check at load
 * (rowsIndependentOfBatch) must pass, or the wasm kernel is kept. TRAJLAB_BLAS=off gives wasm's bits.
 */

/** The functions the binding exports (its allocator settings: AllocatorTuner). */
export interface NativeBlas extends AllocatorTuner {
  /** C[M, N] = op(A)[M, K] op(B)[K, N], row-major float32, op = optional transpose. */
  sgemm(transA: boolean, transB: boolean, m: number, n: number, k: number, a: Float32Array, b: Float32Array, c: Float32Array): void;
  /**
   * The dense optimal denoiser (native/dense_denoiser.h): out[b, dim] = D*(x; t) over the n = halfNorm.length points
   * ([n, dim], halfNorm[j] = ||y_j||^2 / 2), with invT2 = 1 / t^2; `logits` ([b, n]) receives (x * invT2) . y_j -
   * halfNorm[j] * invT2 unless null. One pass over the points; a row's bits depend on that row alone.
   */
  denseDenoise(points: Float32Array, halfNorm: Float32Array, x: Float32Array, invT2: number, out: Float32Array, logits: Float32Array | null): void;
  /** e^v in place for every v <= 0 (0 below -87), with denseDenoise's exponential. */
  denseExp(v: Float32Array): void;
  /**
   * Certified pruning of the optimal denoiser for the rows of `x` at noise level `t` (native/pruned_denoiser.h):
   * kept[r] = the number of training points row r needed, with out[r] its denoised value, or -1 when the row must be
   * computed densely. n = halfNorm.length, dim = mean.length, rank = basis.length / dim, rows = kept.length; `table` is
   * [rank + 2, n]; `maxProjected`, `maxResidual`: the set's radii within and across the axes; `cutoff` = 2 t^2
   * log(n / tolerance).
   */
  prunedDenoise(
    points: Float32Array,
    halfNorm: Float32Array,
    mean: Float32Array,
    basis: Float32Array,
    table: Float32Array,
    maxProjected: number,
    maxResidual: number,
    x: Float32Array,
    t: number,
    cutoff: number,
    maxKept: number,
    out: Float32Array,
    kept: Int32Array,
  ): void;
  /**
   * The KDE gain's exponential sums over one chunk of the training set (native/kde_sums.h), float64: for each of the
   * b = rowTerm.length rows of `a` (logits at x) and `dy` (delta . y_j), both [b, size], out[4r..4r+3] = m0, s0, m1,
   * s1. The same bits on every instruction set, and as packages/denoisers/src/kde-sums.ts.
   */
  kdeSums(a: Float32Array, dy: Float32Array, rowTerm: Float64Array, invT2: number, out: Float64Array): void;
  /** Threads per product from now on (1 to 256). */
  setThreads(threads: number): void;
  threads(): number;
  /** Instruction set from now on (at most bestIsa()); returns it. */
  setIsa(isa: NativeIsa): NativeIsa;
  /** The instruction set in use. */
  isa(): NativeIsa;
  /** The fastest instruction set this CPU supports. */
  bestIsa(): NativeIsa;
}

/** The native product's instruction sets: vector kernels (x86-64) and the portable C path (much slower than wasm). */
export const NATIVE_ISAS = ['avx512', 'avx2', 'scalar'] as const;
export type NativeIsa = (typeof NATIVE_ISAS)[number];

export const BLAS_CHOICES = ['auto', 'on', 'off'] as const;
/**
 * `auto`: native products when the binding is built and the CPU has a vector kernel (AVX2 + FMA or AVX-512); `on`:
 * required (an error if the binding is missing), even on the portable C path; `off`: wasm's own.
 */
export type BlasChoice = (typeof BLAS_CHOICES)[number];

/** How logs, study.json and the report name the native product. */
export const NATIVE_MATMUL_NAME = 'native row-stable sgemm';

/** Where the binding is built (by scripts/build-native.mjs). */
export const NATIVE_BLAS_PATH = fileURLToPath(new URL('../native/build/trajlab_blas.node', import.meta.url));

const BINDING_FUNCTIONS = ['sgemm', 'denseDenoise', 'denseExp', 'prunedDenoise', 'kdeSums', 'setThreads', 'threads', 'setIsa', 'isa', 'bestIsa'] as const;

/** The functions of NativeBlas a loaded binding lacks (one built by an older trajlab, say). */
export function missingBindingFunctions(binding: Record<string, unknown>): string[] {
  return BINDING_FUNCTIONS.filter((f) => typeof binding[f] !== 'function');
}

/** The binding, or why it cannot be used. */
export function loadNativeBlas(): { blas: NativeBlas } | { reason: string } {
  if (!existsSync(NATIVE_BLAS_PATH)) return { reason: 'the native binding is not built (needs a C compiler and Node\'s headers at install, then pnpm install)' };
  try {
    const loaded = createRequire(import.meta.url)(NATIVE_BLAS_PATH) as Record<string, unknown>;
    const missing = missingBindingFunctions(loaded);
    if (missing.length) return { reason: `the native binding is out of date (no ${missing.join(', ')}): rebuild it with pnpm install` };
    return { blas: loaded as unknown as NativeBlas };
  } catch (err) {
    return { reason: `the native binding did not load: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}` };
  }
}

/**
 * Whether every row of a product gets the same bits whatever the rows computed with it: each row of batches of 1 to 31
 * rows (all four transpositions, odd inner and outer sizes) against the same row computed alone.
 */
export function rowsIndependentOfBatch(blas: NativeBlas): boolean {
  const k = 37;
  const n = 29;
  const rows = 31;
  const fill = (len: number, seed: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(seed * 1000 + i * 0.7311) * 1.7);
  const a = fill(rows * k, 1);
  const b = fill(k * n, 2);
  const transposed = (x: Float32Array, r: number, c: number) => Float32Array.from({ length: r * c }, (_, i) => x[(i % r) * c + Math.floor(i / r)]!);
  const aT = transposed(a, rows, k); // [k, rows]
  const bT = transposed(b, k, n); // [n, k]
  for (const [tA, tB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    const bOp = tB ? bT : b;
    const alone = new Float32Array(rows * n);
    for (let r = 0; r < rows; r++) {
      // row r alone: op(A) restricted to that row
      const aRow = tA ? Float32Array.from({ length: k }, (_, i) => aT[i * rows + r]!) : a.subarray(r * k, (r + 1) * k);
      blas.sgemm(tA, tB, 1, n, k, aRow, bOp, alone.subarray(r * n, (r + 1) * n));
    }
    for (const m of [2, 3, 5, 8, 13, 17, 24, 31]) {
      const aOp = tA ? transposed(a.subarray(0, m * k), m, k) : a.subarray(0, m * k);
      const c = new Float32Array(m * n);
      blas.sgemm(tA, tB, m, n, k, aOp, bOp, c);
      for (let i = 0; i < m * n; i++) if (!Object.is(c[i], alone[i])) return false;
    }
  }
  return true;
}

/** An invalid TRAJLAB_BLAS, TRAJLAB_BLAS_THREADS or TRAJLAB_BLAS_ISA (user input). */
export class BlasChoiceError extends Error {
  override name = 'BlasChoiceError';
}

/** What the environment asks of the native products. */
export interface BlasSettings {
  /** TRAJLAB_BLAS. @defaultValue 'auto' */
  choice: BlasChoice;
  /** TRAJLAB_BLAS_THREADS: threads per product (cores are better used through `--workers`). @defaultValue 1 */
  threads: number;
  /** TRAJLAB_BLAS_ISA: `auto` (the CPU's fastest) or an instruction set at most the CPU's fastest. @defaultValue 'auto' */
  isa: NativeIsa | 'auto';
}

/** Reads TRAJLAB_BLAS (default auto), TRAJLAB_BLAS_THREADS (default 1) and TRAJLAB_BLAS_ISA (default auto). */
export function blasFromEnv(env: NodeJS.ProcessEnv = process.env): BlasSettings {
  const choice = envChoice(env, 'TRAJLAB_BLAS', BLAS_CHOICES, 'auto', (message) => new BlasChoiceError(message));
  const t = (env.TRAJLAB_BLAS_THREADS ?? '1').trim();
  const threads = Number(t);
  if (!/^\d+$/.test(t) || threads < 1 || threads > 256) throw new BlasChoiceError(`TRAJLAB_BLAS_THREADS must be an integer from 1 to 256; got '${env.TRAJLAB_BLAS_THREADS}'`);
  const isa = envChoice<NativeIsa | 'auto'>(env, 'TRAJLAB_BLAS_ISA', ['auto', ...NATIVE_ISAS], 'auto', (message) => new BlasChoiceError(message));
  return { choice, threads, isa };
}

/** The part of the wasm backend the kernels use (tfjs-backend-wasm's BackendWasm). */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  disposeData(dataId: tf.DataId): void;
}

const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** The installed products: the binding, the kernels they replaced, and the threads per product they were installed with. */
let installed: { blas: NativeBlas; originals: tf.KernelConfig[]; threads: number } | null = null;

/** Whether the wasm backend's matrix products currently run through the native binding. */
export function nativeMatMulActive(): boolean {
  return installed !== null;
}

/** The native binding while it runs the wasm backend's matrix products (its other kernels go with them), else null. */
export function activeNativeBlas(): NativeBlas | null {
  return installed?.blas ?? null;
}

/**
 * Lets each native product use `share` times the threads it was installed with (TRAJLAB_BLAS_THREADS), from the next
 * product on; 1 goes back to those. `trajlab run --workers N` gives a process the cores of the processes that have
 * nothing left to compute (runShards), so that the last batches of a phase run on every core. The bits never depend on
 * the thread count (stable_gemm.h). Without the native products (wasm's own kernel, tfjs-node) it does nothing.
 */
export function shareNativeThreads(share: number): void {
  if (!installed) return;
  if (!Number.isInteger(share) || share < 1) throw new RangeError(`shareNativeThreads needs a positive integer; got ${share}`);
  installed.blas.setThreads(Math.min(256, installed.threads * share));
}

/**
 * C = op(A) op(B) for [..., M, K] x [..., K, N] float32 tensors whose leading (batch) sizes are equal or 1, computed
 * by sgemm per batch entry into a new wasm tensor; null when the shapes or dtypes need the original kernel.
 */
function nativeProduct(blas: NativeBlas, backend: WasmBackend, a: tf.TensorInfo, b: tf.TensorInfo, transA: boolean, transB: boolean): tf.TensorInfo | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return null;
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const n = transB ? br : bc;
  if ((transB ? bc : br) !== k) return null; // let the original kernel report the mismatch
  const batchShapeA = a.shape.slice(0, -2);
  const batchShapeB = b.shape.slice(0, -2);
  const batchA = sizeOf(batchShapeA);
  const batchB = sizeOf(batchShapeB);
  let batchShape: number[];
  try {
    batchShape = tf.broadcast_util.assertAndGetBroadcastShape(batchShapeA, batchShapeB);
  } catch {
    return null; // the original kernel reports it
  }
  // one sgemm per batch entry: each operand either has every entry or one shared entry
  const batch = sizeOf(batchShape);
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) return null;
  const out = backend.makeOutput([...batchShape, m, n], 'float32');
  // views are taken after makeOutput: an allocation may grow the wasm memory and detach older views
  const av = backend.typedArrayFromHeap(a);
  const bv = backend.typedArrayFromHeap(b);
  const cv = backend.typedArrayFromHeap(out);
  for (let i = 0; i < batch; i++) {
    const aOff = batchA === 1 ? 0 : i * m * k;
    const bOff = batchB === 1 ? 0 : i * k * n;
    blas.sgemm(transA, transB, m, n, k, av.subarray(aOff, aOff + m * k), bv.subarray(bOff, bOff + k * n), cv.subarray(i * m * n, (i + 1) * m * n));
  }
  return out;
}

/** _FusedMatMul's activations that wasm has as separate kernels (others fall back to wasm's fused kernel). */
const ACTIVATION_KERNELS: Record<string, string | null> = { linear: null, relu: 'Relu', relu6: 'Relu6', elu: 'Elu', sigmoid: 'Sigmoid' };

/**
 * The instruction set to use given the CPU's fastest (`best`) and the one asked for (`auto`: the fastest), or why the
 * native product is not used. `requireVector`: without a request, refuse the portable C path (slower than wasm's own
 * kernel); an explicit TRAJLAB_BLAS_ISA=scalar is honoured.
 */
export function chooseNativeIsa(best: NativeIsa, requested: NativeIsa | 'auto', requireVector: boolean): { isa: NativeIsa } | { reason: string } {
  if (requested !== 'auto' && NATIVE_ISAS.indexOf(requested) < NATIVE_ISAS.indexOf(best)) return { reason: `TRAJLAB_BLAS_ISA=${requested} but this CPU's fastest is ${best}` };
  if (requested === 'auto' && best === 'scalar' && requireVector) {
    return { reason: "this CPU has neither AVX2 with FMA nor AVX-512, and the portable native path is slower than wasm's kernel (TRAJLAB_BLAS=on or TRAJLAB_BLAS_ISA=scalar use it anyway)" };
  }
  return { isa: requested === 'auto' ? best : requested };
}

/**
 * Registers native products as the wasm backend's BatchMatMul and _FusedMatMul (once per process; wasm only), with
 * `threads` threads per product and instruction set `isa` (see chooseNativeIsa). Returns the binding, or `reason` when
 * it is not used.
 */
export function installNativeMatMul(threads = 1, isa: NativeIsa | 'auto' = 'auto', requireVector = false): { blas: NativeBlas } | { reason: string } {
  const loaded = installed ? { blas: installed.blas } : loadNativeBlas();
  if (!('blas' in loaded)) return loaded;
  const { blas } = loaded;
  const choice = chooseNativeIsa(blas.bestIsa(), isa, requireVector);
  if (!('isa' in choice)) return choice;
  const wanted = choice.isa;
  blas.setThreads(threads);
  blas.setIsa(wanted);
  if (installed) {
    installed.threads = threads;
    return { blas };
  }
  if (tf.getBackend() !== 'wasm') return { reason: `the active backend is ${tf.getBackend()}, not wasm` };
  if (!rowsIndependentOfBatch(blas)) {
    return { reason: `the native product (${wanted}) gave a row different bits depending on the rows computed with it, so results would depend on the shard size` };
  }
  const batchMatMul = tf.getKernel('BatchMatMul', 'wasm');
  const fused = tf.getKernel('_FusedMatMul', 'wasm');
  const add = tf.getKernel('Add', 'wasm')?.kernelFunc;
  if (!batchMatMul || !fused || !add) return { reason: 'the wasm backend lacks BatchMatMul, _FusedMatMul or Add' };
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    ...batchMatMul,
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      return nativeProduct(blas, args.backend as unknown as WasmBackend, a, b, transposeA, transposeB) ?? batchMatMul.kernelFunc(args);
    },
  });
  tf.unregisterKernel('_FusedMatMul', 'wasm');
  tf.registerKernel({
    ...fused,
    kernelFunc: (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
      const attrs = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
      const activation = attrs.activation ?? 'linear';
      const backend = args.backend as unknown as WasmBackend;
      if (preluActivationWeights || !(activation in ACTIVATION_KERNELS)) return fused.kernelFunc(args);
      const product = nativeProduct(blas, backend, a!, b!, attrs.transposeA, attrs.transposeB);
      if (!product) return fused.kernelFunc(args);
      let out = product;
      if (bias) {
        out = add({ inputs: { a: product, b: bias }, backend: args.backend, attrs: {} }) as tf.TensorInfo;
        backend.disposeData(product.dataId);
      }
      const kernelName = ACTIVATION_KERNELS[activation];
      if (kernelName) {
        const activated = tf.getKernel(kernelName, 'wasm')!.kernelFunc({ inputs: { x: out }, backend: args.backend, attrs: {} }) as tf.TensorInfo;
        backend.disposeData(out.dataId);
        out = activated;
      }
      return out;
    },
  });
  installed = { blas, originals: [batchMatMul, fused], threads };
  return { blas };
}

/** Puts wasm's own kernels back (tests and benchmarks compare both). */
export function uninstallNativeMatMul(): void {
  if (!installed) return;
  for (const k of installed.originals) {
    tf.unregisterKernel(k.kernelName, k.backendName);
    tf.registerKernel(k);
  }
  installed = null;
}
