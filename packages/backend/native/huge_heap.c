/*
 * The process heap in transparent huge pages (../src/allocator.ts explains why). A page fault costs the same whether it
 * maps 4 KiB or 2 MiB, and on some VMs a fault costs 10 us or more, so a computing process whose heap grows to tens of
 * MiB (its Float32Arrays live there) spends a tenth of its CPU time faulting 4 KiB pages in. glibc can advise huge
 * pages itself (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), but only when set before the process starts; this does the
 * same for a process already running: one allocation taken from the heap itself (fresh mappings switched off for it)
 * and freed at once leaves the heap that much larger but untouched, then the heap's whole range is advised. The caller
 * keeps glibc from giving that memory back (M_TRIM_THRESHOLD above `bytes`): a heap that shrinks and grows again gets
 * a new mapping without the advice. Growth beyond the reserve gets ordinary pages.
 */
#define _GNU_SOURCE
#include "huge_heap.h"

#include <stdint.h> /* defines __GLIBC__ where the C library is glibc (checked below) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define HUGE_PAGE ((uintptr_t)2 << 20)
/* glibc's default M_MMAP_MAX (DEFAULT_MMAP_MAX on 64-bit), restored after the reserving allocation. */
#define GLIBC_MMAP_MAX 65536

long long huge_heap_reserve(size_t bytes) {
#if defined(__GLIBC__) && defined(MADV_HUGEPAGE)
  if (bytes > 0) {
    mallopt(M_MMAP_MAX, 0); /* the block below comes from the heap (sbrk), not from a mapping of its own */
    void *volatile block = malloc(bytes); /* volatile: the compiler may not drop an allocation nobody reads */
    mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX);
    free(block); /* back into the heap's top chunk: malloc and free wrote only its first and last page */
  }
  FILE *maps = fopen("/proc/self/maps", "r");
  if (!maps) return 0;
  char line[512];
  long long advised = 0;
  int refused = 0;
  while (fgets(line, sizeof line, maps)) {
    uintptr_t start, end;
    if (!strstr(line, "[heap]") || sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &start, &end) != 2) continue;
    uintptr_t from = (start + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    uintptr_t to = end & ~(HUGE_PAGE - 1);
    if (to <= from) continue;
    if (madvise((void *)from, to - from, MADV_HUGEPAGE) == 0) advised += (long long)(to - from);
    else refused = 1;
  }
  fclose(maps);
  return refused && advised == 0 ? -1 : advised;
#else
  (void)bytes;
  return 0;
#endif
}
