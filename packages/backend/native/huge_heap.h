#ifndef TRAJLAB_HUGE_HEAP_H
#define TRAJLAB_HUGE_HEAP_H
#include <stddef.h>

/*
 * Grows the heap of glibc's main arena to at least `bytes` beyond what it holds, without touching the new memory, and
 * asks the kernel for transparent huge pages over the whole heap (madvise MADV_HUGEPAGE). Returns the bytes advised,
 * 0 where nothing could be (another C library, no [heap] mapping), or -1 if madvise refused (a kernel without
 * transparent huge pages).
 */
long long huge_heap_reserve(size_t bytes);

#endif
