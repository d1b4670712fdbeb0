/**
 * The C library's allocator in a process that computes (TRAJLAB_MALLOC). A shard allocates and frees buffers of its
 * batch's size at every time point: tfjs-wasm's copies out of its heap, the host copies of x and D(x), the native
 * denoiser's output. With glibc's defaults, allocations above a threshold (128 KiB at first) get fresh mappings, and
 * freed memory at the top of the heap goes back to the system beyond twice that, so the next buffer's pages fault in
 * again (12-16 us each on the VMs of the eighteenth and nineteenth sessions). The compute settings keep them mapped.
 *
 * The heap's first growth faults too, once per page: a shard process's heap reaches ~60 MiB, ~15k faults of 4 KiB
 * (~0.17 s of CPU where a fault costs 11 us, as on the twenty-second session's VM). With TRAJLAB_HUGE_PAGES=on (the
 * default) the compute settings also reserve HUGE_PAGE_HEAP bytes of heap in transparent huge pages, where the kernel
 * offers them (`madvise` or `always` in /sys/kernel/mm/transparent_hugepage/enabled): a fault then maps 2 MiB.
 */
import { readFileSync } from 'node:fs';
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
  /** Free memory at the top of the heap kept for reuse before any is given back (without the huge-page heap). */
  trimThreshold: 64 * 2 ** 20,
  /** Extra heap requested each time it grows. */
  topPad: 16 * 2 ** 20,
};

/**
 * Heap reserved in transparent huge pages (TRAJLAB_HUGE_PAGES=on), bytes: address space only until touched, then
 * 2 MiB at a time. Free memory at the top of the heap is then kept up to this plus COMPUTE_MALLOC.trimThreshold (the
 * reserve must not be given back: a heap that shrinks and grows again loses the advice). A heap beyond it grows in
 * ordinary pages.
 */
export const HUGE_PAGE_HEAP = 256 * 2 ** 20;

/** TRAJLAB_MALLOC, checked (default `compute`); an unknown value is an error naming the variable. */
export function mallocFromEnv(env: NodeJS.ProcessEnv = process.env): MallocChoice {
  return envChoice(env, 'TRAJLAB_MALLOC', MALLOC_CHOICES, 'compute', (message) => new MallocChoiceError(message));
}

/** `on`: the compute settings include a heap in transparent huge pages (HUGE_PAGE_HEAP); `off`: ordinary pages. */
export const HUGE_PAGES_CHOICES = ['on', 'off'] as const;
export type HugePagesChoice = (typeof HUGE_PAGES_CHOICES)[number];

/** TRAJLAB_HUGE_PAGES, checked (default `on`); an unknown value is an error naming the variable. */
export function hugePagesFromEnv(env: NodeJS.ProcessEnv = process.env): HugePagesChoice {
  return envChoice(env, 'TRAJLAB_HUGE_PAGES', HUGE_PAGES_CHOICES, 'on', (message) => new MallocChoiceError(message));
}

/** The kernel's transparent huge page mode (the bracketed word of `settingsFile`), or null where there is none. */
export function transparentHugePages(settingsFile = '/sys/kernel/mm/transparent_hugepage/enabled'): 'always' | 'madvise' | 'never' | null {
  try {
    const mode = /\[(always|madvise|never)\]/.exec(readFileSync(settingsFile, 'utf8'))?.[1];
    return (mode as 'always' | 'madvise' | 'never' | undefined) ?? null;
  } catch {
    return null;
  }
}

/** What sets the allocator: the native binding's functions (absent from a binding built by an older trajlab). */
export interface AllocatorTuner {
  /** glibc's malloc settings, bytes; false where not applied. */
  tuneAllocator?(mmapThreshold: number, trimThreshold: number, topPad: number): boolean;
  /** Grows the heap by `bytes` untouched and advises huge pages over it; the bytes advised, 0 if none, -1 if refused. */
  reserveHugePageHeap?(bytes: number): number;
}

/** What tuneAllocatorForCompute did. */
export interface AllocatorSettings {
  /** COMPUTE_MALLOC is in force (false with TRAJLAB_MALLOC=default, another C library, or an older binding). */
  tuned: boolean;
  /** Bytes of heap advised to use transparent huge pages (0: none). */
  hugePageHeap: number;
}

/**
 * Applies COMPUTE_MALLOC through `binding` when TRAJLAB_MALLOC is `compute`, with a heap of HUGE_PAGE_HEAP bytes in
 * transparent huge pages when TRAJLAB_HUGE_PAGES is `on` and the kernel's mode (`thp`) allows it.
 */
export function tuneAllocatorForCompute(binding: AllocatorTuner, env: NodeJS.ProcessEnv = process.env, thp = transparentHugePages()): AllocatorSettings {
  const hugePages = hugePagesFromEnv(env) === 'on' && (thp === 'madvise' || thp === 'always') && !!binding.reserveHugePageHeap;
  if (mallocFromEnv(env) !== 'compute' || !binding.tuneAllocator) return { tuned: false, hugePageHeap: 0 };
  const trim = COMPUTE_MALLOC.trimThreshold + (hugePages ? HUGE_PAGE_HEAP : 0);
  const tuned = binding.tuneAllocator(COMPUTE_MALLOC.mmapThreshold, trim, COMPUTE_MALLOC.topPad);
  const advised = tuned && hugePages ? binding.reserveHugePageHeap!(HUGE_PAGE_HEAP) : 0;
  return { tuned, hugePageHeap: Math.max(0, advised) };
}
