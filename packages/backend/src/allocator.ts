/**
 * The C library's allocator in a process that computes (TRAJLAB_MALLOC). A shard allocates and frees buffers of its
 * batch's size at every time point: tfjs-wasm's copies out of its heap, the host copies of x and D(x), the native
 * denoiser's output. With glibc's defaults, allocations above a threshold (128 KiB at first) get fresh mappings, and
 * freed memory at the top of the heap goes back to the system beyond twice that, so the next buffer's pages fault in
 * again (12-16 us each on the VMs of the eighteenth and nineteenth sessions). The compute settings keep them mapped.
 */
import { envChoice } from './env-choice.js';

/** `compute`: COMPUTE_MALLOC (on glibc, through the native binding); `default`: the C library's own settings. */
export const MALLOC_CHOICES = ['compute', 'default'] as const;
export type MallocChoice = (typeof MALLOC_CHOICES)[number];

/** A TRAJLAB_MALLOC value that is not one. */
export class MallocChoiceError extends Error {
  override name = 'MallocChoiceError';
}

/** glibc settings for a computing process (mallopt), bytes. */
export const COMPUTE_MALLOC = {
  /** Allocations below this come from the heap, not from fresh mappings (glibc's largest: 32 MiB on 64-bit). */
  mmapThreshold: 32 * 2 ** 20,
  /** Free memory at the top of the heap kept for reuse before any is given back. */
  trimThreshold: 64 * 2 ** 20,
  /** Extra heap requested each time it grows. */
  topPad: 16 * 2 ** 20,
};

/** TRAJLAB_MALLOC, checked (default `compute`); an unknown value is an error naming the variable. */
export function mallocFromEnv(env: NodeJS.ProcessEnv = process.env): MallocChoice {
  return envChoice(env, 'TRAJLAB_MALLOC', MALLOC_CHOICES, 'compute', (message) => new MallocChoiceError(message));
}

/** What sets the allocator: the native binding's tuneAllocator (absent from a binding built by an older trajlab). */
export interface AllocatorTuner {
  tuneAllocator?(mmapThreshold: number, trimThreshold: number, topPad: number): boolean;
}

/**
 * Applies COMPUTE_MALLOC through `binding` when TRAJLAB_MALLOC is `compute`; returns whether the settings are in force
 * (false with `default`, another C library, or an older binding).
 */
export function tuneAllocatorForCompute(binding: AllocatorTuner, env: NodeJS.ProcessEnv = process.env): boolean {
  if (mallocFromEnv(env) !== 'compute' || !binding.tuneAllocator) return false;
  return binding.tuneAllocator(COMPUTE_MALLOC.mmapThreshold, COMPUTE_MALLOC.trimThreshold, COMPUTE_MALLOC.topPad);
}
