import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  COMPUTE_MALLOC,
  HUGE_PAGE_HEAP,
  hugePagesFromEnv,
  loadNativeBlas,
  MallocChoiceError,
  mallocFromEnv,
  NATIVE_BLAS_PATH,
  transparentHugePages,
  tuneAllocatorForCompute,
} from '@trajlab/backend';
import { describe, expect, it } from 'vitest';
import { expectRunRefusesEnv, tempDir } from './helpers.js';

/** glibc's version where this process runs on glibc (tuneAllocator applies only there). */
const glibc = (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime;
const binding = existsSync(NATIVE_BLAS_PATH) ? loadNativeBlas() : null;
const native = binding && 'blas' in binding ? binding.blas : null;

/**
 * Minor page faults of a fresh Node process that, with `tune`, sets COMPUTE_MALLOC through the binding, then 30
 * times allocates eight arrays of 1.2 MB and up, touches every page and lets them go (a shard's per-point buffers, in
 * small). The arrays grow a little every round, as buffers of varying batches do: glibc's default threshold for fresh
 * mappings, raised to the largest chunk freed so far, never catches up, so each of them is mapped anew.
 */
function faultsOfAllocations(tune: boolean): number {
  const script = join(tempDir('trajlab-malloc-'), 'allocate.cjs');
  writeFileSync(
    script,
    `const binding = require(${JSON.stringify(NATIVE_BLAS_PATH)});
     if (${tune}) binding.tuneAllocator(${COMPUTE_MALLOC.mmapThreshold}, ${COMPUTE_MALLOC.trimThreshold}, ${COMPUTE_MALLOC.topPad});
     const before = process.resourceUsage().minorPageFault;
     for (let round = 0; round < 30; round++) {
       let keep = [];
       const n = 300000 + round * 16384;
       for (let k = 0; k < 8; k++) { const a = new Float32Array(n); for (let i = 0; i < a.length; i += 1024) a[i] = k; keep.push(a); }
       keep = null;
       gc();
     }
     console.log(process.resourceUsage().minorPageFault - before);`,
  );
  const res = spawnSync(process.execPath, ['--expose-gc', script], { encoding: 'utf8' });
  expect(res.status, res.stderr).toBe(0);
  return Number(res.stdout.trim());
}

/** The backend's entry, imported by the scripts of fresh processes below (run with tsx). */
const BACKEND_SOURCE = join(process.cwd(), 'packages/backend/src/allocator.ts');

/** The kernel's transparent huge pages can be asked for by madvise here. */
const thpAdvisable = ['madvise', 'always'].includes(transparentHugePages() ?? 'never');

/**
 * A fresh Node process that applies the compute settings as initBackend does (tuneAllocatorForCompute under `env`),
 * then fills a 24 MB Float32Array (from the heap: below the 32 MiB mapping threshold); prints what it was told and
 * its heap mappings' sizes, huge-page advice and huge pages in use (/proc/self/smaps), and its minor faults.
 */
function heapAfterCompute(env: Record<string, string>): { settings: { tuned: boolean; hugePageHeap: number }; heap: { size: number; advised: boolean; hugeKiB: number }[]; faults: number } {
  const script = join(tempDir('trajlab-thp-'), 'heap.mjs');
  writeFileSync(
    script,
    `import { readFileSync } from 'node:fs';
     import { tuneAllocatorForCompute } from ${JSON.stringify(BACKEND_SOURCE)};
     import { createRequire } from 'node:module';
     const binding = createRequire(import.meta.url)(${JSON.stringify(NATIVE_BLAS_PATH)});
     const settings = tuneAllocatorForCompute(binding);
     const before = process.resourceUsage().minorPageFault;
     const a = new Float32Array(6e6);
     for (let i = 0; i < a.length; i += 1024) a[i] = 1;
     const faults = process.resourceUsage().minorPageFault - before;
     const heap = readFileSync('/proc/self/smaps', 'utf8').split(/\\n(?=[0-9a-f]+-[0-9a-f]+ )/).filter((m) => m.includes('[heap]')).map((m) => {
       const [from, to] = m.split(' ')[0].split('-').map((x) => parseInt(x, 16));
       const field = (name) => m.split('\\n').find((line) => line.startsWith(name + ':')).slice(name.length + 1).trim();
       return { size: to - from, advised: field('VmFlags').split(' ').includes('hg'), hugeKiB: parseInt(field('AnonHugePages'), 10) };
     });
     console.log(JSON.stringify({ settings, heap, faults }));`,
  );
  const res = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', env: { ...process.env, ...env }, cwd: process.cwd() });
  expect(res.status, res.stderr).toBe(0);
  return JSON.parse(res.stdout.trim().split('\n').pop()!);
}

describe('the allocator of a computing process (TRAJLAB_MALLOC)', () => {
  it('is compute by default; default leaves the C library as it is; anything else is refused by name', () => {
    expect(mallocFromEnv({})).toBe('compute');
    expect(mallocFromEnv({ TRAJLAB_MALLOC: ' Default ' })).toBe('default');
    expect(() => mallocFromEnv({ TRAJLAB_MALLOC: 'jemalloc' })).toThrow(MallocChoiceError);
    expect(() => mallocFromEnv({ TRAJLAB_MALLOC: 'jemalloc' })).toThrow(/TRAJLAB_MALLOC must be one of compute, default; got 'jemalloc'/);
  });

  it.runIf(native && glibc)('the compute settings apply through the native binding on glibc (not with TRAJLAB_MALLOC=default)', () => {
    expect(tuneAllocatorForCompute(native!, { TRAJLAB_MALLOC: 'default' })).toEqual({ tuned: false, hugePageHeap: 0 });
    // no huge pages where the kernel has none to give (its mode `never`, or no such setting), whatever the variable says
    expect(tuneAllocatorForCompute(native!, {}, 'never')).toEqual({ tuned: true, hugePageHeap: 0 });
    expect(tuneAllocatorForCompute(native!, {}, null)).toEqual({ tuned: true, hugePageHeap: 0 });
    expect(() => native!.tuneAllocator!(-1, 0, 0)).toThrow(/each size must be from 0/);
    expect(() => native!.reserveHugePageHeap!(-1)).toThrow(/reserveHugePageHeap\(bytes\): bytes must be from 0 to 2\^40/);
  });

  it.runIf(native && glibc)('keep freed buffers mapped: repeated allocations fault far fewer pages in than with glibc\'s defaults', () => {
    const plain = faultsOfAllocations(false);
    const tuned = faultsOfAllocations(true);
    // 30 rounds x 8 arrays x 293-770 pages (~131k): with the defaults nearly all fault in; tuned, the heap's pages are
    // reused and only its growth faults
    expect(plain).toBeGreaterThan(60000);
    expect(tuned).toBeLessThan(0.3 * plain);
  });

  it('TRAJLAB_HUGE_PAGES is on by default, off on request, anything else refused by name; the kernel mode is read from its setting', () => {
    expect(hugePagesFromEnv({})).toBe('on');
    expect(hugePagesFromEnv({ TRAJLAB_HUGE_PAGES: ' OFF' })).toBe('off');
    expect(() => hugePagesFromEnv({ TRAJLAB_HUGE_PAGES: 'yes' })).toThrow(/TRAJLAB_HUGE_PAGES must be one of on, off; got 'yes'/);
    const dir = tempDir('trajlab-thp-mode-');
    const setting = join(dir, 'enabled');
    writeFileSync(setting, 'always defer [madvise] never\n');
    expect(transparentHugePages(setting)).toBe('madvise');
    writeFileSync(setting, 'always [never]\n');
    expect(transparentHugePages(setting)).toBe('never');
    expect(transparentHugePages(join(dir, 'missing'))).toBeNull();
  });

  it.runIf(native && glibc && thpAdvisable)('TRAJLAB_HUGE_PAGES=on: the heap is reserved in transparent huge pages, and a big array filled there faults 2 MiB at a time', () => {
    const huge = heapAfterCompute({});
    const plain = heapAfterCompute({ TRAJLAB_HUGE_PAGES: 'off' });
    expect(huge.settings.tuned).toBe(true);
    // the whole reserve is advised (less at most the 2 MiB-aligned ends of the heap)
    expect(huge.settings.hugePageHeap).toBeGreaterThanOrEqual(HUGE_PAGE_HEAP - 4 * 2 ** 20);
    const advised = huge.heap.filter((m) => m.advised);
    expect(advised.reduce((sum, m) => sum + m.size, 0)).toBe(huge.settings.hugePageHeap);
    expect(plain.settings).toEqual({ tuned: true, hugePageHeap: 0 });
    expect(plain.heap.some((m) => m.advised)).toBe(false);
    // 24 MB is ~5900 pages of 4 KiB, ~12 of 2 MiB: the kernel may fall back to small pages for some (no free huge
    // page at hand), never for most
    expect(plain.faults).toBeGreaterThan(5000);
    expect(huge.faults).toBeLessThan(0.25 * plain.faults);
    expect(advised.reduce((sum, m) => sum + m.hugeKiB, 0)).toBeGreaterThanOrEqual(12 * 1024);
  });

  it('trajlab run refuses an unknown TRAJLAB_MALLOC or TRAJLAB_HUGE_PAGES as an input error before it writes anything', () => {
    expectRunRefusesEnv({ TRAJLAB_HUGE_PAGES: 'maybe' }, /TRAJLAB_HUGE_PAGES must be one of on, off; got 'maybe'/);
    expectRunRefusesEnv({ TRAJLAB_MALLOC: 'tcmalloc' }, /TRAJLAB_MALLOC must be one of compute, default; got 'tcmalloc'/);
  });
});
