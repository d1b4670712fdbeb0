import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { COMPUTE_MALLOC, loadNativeBlas, MallocChoiceError, mallocFromEnv, NATIVE_BLAS_PATH, tuneAllocatorForCompute } from '@trajlab/backend';
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

describe('the allocator of a computing process (TRAJLAB_MALLOC)', () => {
  it('is compute by default; default leaves the C library as it is; anything else is refused by name', () => {
    expect(mallocFromEnv({})).toBe('compute');
    expect(mallocFromEnv({ TRAJLAB_MALLOC: ' Default ' })).toBe('default');
    expect(() => mallocFromEnv({ TRAJLAB_MALLOC: 'jemalloc' })).toThrow(MallocChoiceError);
    expect(() => mallocFromEnv({ TRAJLAB_MALLOC: 'jemalloc' })).toThrow(/TRAJLAB_MALLOC must be one of compute, default; got 'jemalloc'/);
  });

  it.runIf(native && glibc)('the compute settings apply through the native binding on glibc (not with TRAJLAB_MALLOC=default)', () => {
    expect(tuneAllocatorForCompute(native!, { TRAJLAB_MALLOC: 'default' })).toBe(false);
    expect(tuneAllocatorForCompute(native!, {})).toBe(true);
    expect(() => native!.tuneAllocator!(-1, 0, 0)).toThrow(/each size must be from 0/);
  });

  it.runIf(native && glibc)('keep freed buffers mapped: repeated allocations fault far fewer pages in than with glibc\'s defaults', () => {
    const plain = faultsOfAllocations(false);
    const tuned = faultsOfAllocations(true);
    // 30 rounds x 8 arrays x 293-770 pages (~131k): with the defaults nearly all fault in; tuned, the heap's pages are
    // reused and only its growth faults
    expect(plain).toBeGreaterThan(60000);
    expect(tuned).toBeLessThan(0.3 * plain);
  });

  it('trajlab run refuses an unknown TRAJLAB_MALLOC as an input error before it writes anything', () => {
    expectRunRefusesEnv({ TRAJLAB_MALLOC: 'tcmalloc' }, /TRAJLAB_MALLOC must be one of compute, default; got 'tcmalloc'/);
  });
});
