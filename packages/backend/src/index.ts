import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { hugePagesFromEnv, mallocFromEnv, tuneAllocatorForCompute } from './allocator.js';
import { BlasChoiceError, blasFromEnv, installNativeMatMul, NATIVE_MATMUL_NAME } from './blas.js';
import { envChoice } from './env-choice.js';
import { tuneHeapForCompute } from './heap.js';

export {
  COMPUTE_MALLOC,
  HUGE_PAGE_HEAP,
  HUGE_PAGES_CHOICES,
  MALLOC_CHOICES,
  MallocChoiceError,
  hugePagesFromEnv,
  mallocFromEnv,
  transparentHugePages,
  tuneAllocatorForCompute,
  type AllocatorSettings,
  type HugePagesChoice,
  type MallocChoice,
} from './allocator.js';
export { COMPUTE_HEAP_GROWING_PERCENT, GC_CHOICES, GcChoiceError, gcFromEnv, tuneHeapForCompute, type GcChoice } from './heap.js';
export { activeNativeBlas, BLAS_CHOICES, NATIVE_MATMUL_NAME, BlasChoiceError, blasFromEnv, chooseNativeIsa, installNativeMatMul, loadNativeBlas, missingBindingFunctions, NATIVE_ISAS, nativeMatMulActive, NATIVE_BLAS_PATH, shareNativeThreads, uninstallNativeMatMul } from './blas.js';
export type { BlasChoice, BlasSettings, NativeBlas, NativeIsa } from './blas.js';

/**
 * Tensor backend selection. `auto` prefers TensorFlow (tfjs-node-gpu, then tfjs-node: optional dependencies that only
 * install where libtensorflow can be downloaded, e.g. the Docker images), then WebAssembly, then plain JavaScript.
 */

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

/** Which backend is active and why. */
export interface BackendInfo {
  /** What was asked for (TRAJLAB_BACKEND or an option). */
  requested: BackendChoice;
  /** The tfjs backend name now active: tensorflow | wasm | cpu. */
  name: string;
  /** The package that provides it. */
  package: string;
  /** Why the preferred backends were skipped (auto only). */
  skipped: string[];
  /**
   * What computes matrix products: the native row-stable product with its instruction set and thread count when the
   * wasm backend's products run through the native binding (see blas.ts), else the backend's own kernel; `matMulNote`
   * says why not native.
   */
  matMul: string;
  matMulNote?: string;
}

let active: BackendInfo | null = null;

/** An invalid backend choice (user input: exit code 2 at the CLI). */
export class BackendChoiceError extends Error {
  override name = 'BackendChoiceError';
}

/**
 * Reads TRAJLAB_BACKEND (and checks TRAJLAB_BLAS, TRAJLAB_BLAS_THREADS, TRAJLAB_BLAS_ISA: see blasFromEnv; and
 * TRAJLAB_MALLOC and TRAJLAB_HUGE_PAGES: see allocator.ts); an unknown value is an error naming the variable.
 */
export function backendFromEnv(env: NodeJS.ProcessEnv = process.env): BackendChoice {
  blasFromEnv(env);
  mallocFromEnv(env);
  hugePagesFromEnv(env);
  return envChoice(env, 'TRAJLAB_BACKEND', BACKEND_CHOICES, 'auto', (message) => new BackendChoiceError(message));
}

/** Imports a module by a runtime name, so optional packages need not be present at type-check time. */
async function importOptional(name: string): Promise<unknown> {
  return import(name);
}

/**
 * Where tfjs-node(-gpu) is installed without its native binding (its install script, which downloads libtensorflow,
 * did not run), importing it registers every kernel and then fails; check for the binding first to fail quietly.
 */
function nativeBindingProblem(pkg: string): string | null {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`));
  } catch {
    return 'not installed';
  }
  const lib = join(dir, 'lib');
  const built = existsSync(lib) && readdirSync(lib).some((d) => d.startsWith('napi-v') && existsSync(join(lib, d, 'tfjs_binding.node')));
  return built ? null : 'installed without its native binding (libtensorflow was not downloaded)';
}

async function tryTensorflow(): Promise<string> {
  const errors: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    const problem = nativeBindingProblem(pkg);
    if (problem) {
      errors.push(`${pkg}: ${problem}`);
      continue;
    }
    try {
      await importOptional(pkg);
      if (await tf.setBackend('tensorflow')) return pkg;
      errors.push(`${pkg}: loaded but the 'tensorflow' backend did not initialise`);
    } catch (err) {
      errors.push(`${pkg}: ${firstLine(err)}`);
    }
  }
  throw new Error(errors.join('; '));
}

async function tryWasm(): Promise<string> {
  // The Emscripten glue adds process-wide uncaughtException/unhandledRejection handlers that rethrow and print its whole
  // minified source; remove whatever it added so our own error reporting stays readable.
  const before = {
    uncaughtException: new Set(process.listeners('uncaughtException')),
    unhandledRejection: new Set(process.listeners('unhandledRejection')),
  };
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // its .wasm files sit next to its entry; said explicitly, since bundled trajlab runs it from another directory
    wasm.setWasmPaths(`${dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'))}/`);
    if (!(await tf.setBackend('wasm'))) throw new Error("the 'wasm' backend did not initialise");
    await tf.ready();
  } finally {
    for (const l of process.listeners('uncaughtException')) if (!before.uncaughtException.has(l)) process.removeListener('uncaughtException', l);
    for (const l of process.listeners('unhandledRejection')) if (!before.unhandledRejection.has(l)) process.removeListener('unhandledRejection', l);
  }
  return '@tensorflow/tfjs-backend-wasm';
}

async function tryCpu(): Promise<string> {
  await import('@tensorflow/tfjs-backend-cpu');
  // tfjs prints a one-time advert for tfjs-node when the cpu backend first runs in Node; we log our own choice instead.
  tf.env().set('IS_TEST', true);
  if (!(await tf.setBackend('cpu'))) throw new Error("the 'cpu' backend did not initialise");
  return '@tensorflow/tfjs-backend-cpu';
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 200);
}

/**
 * Activates a backend once per process (later calls return the first result, and fail if a different explicit
 * backend is requested). An explicit choice that cannot load is an error. Only processes that compute call it: it
 * also sets V8's heap growth for them (TRAJLAB_GC, heap.ts).
 */
export async function initBackend(requested: BackendChoice = backendFromEnv()): Promise<BackendInfo> {
  if (active) {
    if (requested !== 'auto' && requested !== active.requested && !(requested === 'tensorflow' ? active.name === 'tensorflow' : active.name === requested)) {
      throw new Error(`backend '${active.name}' is already active in this process; cannot switch to '${requested}'`);
    }
    return active;
  }
  // the process computes: V8's heap grows for it as for a program that allocates fast (heap.ts)
  tuneHeapForCompute();
  const order: { name: string; load: () => Promise<string> }[] =
    requested === 'auto'
      ? [
          { name: 'tensorflow', load: tryTensorflow },
          { name: 'wasm', load: tryWasm },
          { name: 'cpu', load: tryCpu },
        ]
      : [{ name: requested, load: { tensorflow: tryTensorflow, wasm: tryWasm, cpu: tryCpu }[requested] }];
  const skipped: string[] = [];
  for (const candidate of order) {
    let pkg: string;
    try {
      pkg = await candidate.load();
    } catch (err) {
      if (requested !== 'auto') throw new Error(`TRAJLAB_BACKEND=${requested} could not be loaded: ${firstLine(err)}`);
      skipped.push(`${candidate.name}: ${firstLine(err)}`);
      continue;
    }
    active = { requested, name: tf.getBackend(), package: pkg, skipped, ...matMulProvider() };
    return active;
  }
  throw new Error(`no tensor backend could be loaded (${skipped.join('; ')})`);
}

/** Routes wasm's matrix products through the native binding when TRAJLAB_BLAS allows and the binding is built. */
function matMulProvider(): { matMul: string; matMulNote?: string } {
  const own = `${tf.getBackend()} (its own kernel)`;
  if (tf.getBackend() !== 'wasm') return { matMul: own };
  const { choice, threads, isa } = blasFromEnv();
  if (choice === 'off') return { matMul: own, matMulNote: 'TRAJLAB_BLAS=off' };
  const res = installNativeMatMul(threads, isa, choice === 'auto');
  if (!('blas' in res)) {
    if (choice === 'on') throw new BlasChoiceError(`TRAJLAB_BLAS=on but ${res.reason}`);
    return { matMul: own, matMulNote: res.reason };
  }
  // the process computes: its allocator keeps the pages of the buffers it frees, its heap in huge pages (allocator.ts)
  tuneAllocatorForCompute(res.blas);
  // e.g. "native row-stable sgemm (avx512), 1 thread"
  return { matMul: `${NATIVE_MATMUL_NAME} (${res.blas.isa()}), ${threads} thread${threads > 1 ? 's' : ''}` };
}

/** One line for logs: the backend, its package and what computes its matrix products. */
export function describeBackend(b: BackendInfo): string {
  return `${b.name} (${b.package}); matrix products: ${b.matMul}${b.matMulNote ? ` [${b.matMulNote}]` : ''}`;
}

/** The active backend, or null before initBackend. */
export function activeBackend(): BackendInfo | null {
  return active;
}
