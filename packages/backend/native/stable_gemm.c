/*
 * The row-stable matrix product of stable_gemm.h.
 *
 * Every element of C is one sequential chain of fused multiply-adds over p = 0..K-1 (the K dimension is never split
 * across accumulators, and a block of K that continues a chain starts from the value the previous block stored). The
 * vector kernels keep one chain per lane: an MR x NR block of C lives in registers, each step p broadcasts one value
 * of each of the MR left rows and multiplies it into NR right values (a vector load). Lanes never mix, so the tile
 * shape, the vector width and the split over threads change the speed, never the bits; rows of C past M and columns
 * past N are computed on repeated or zero inputs and dropped.
 *
 * Layout: the right operand is read in rows of NR contiguous floats, the left one element by element at any stride.
 * Each product is computed as C = op(A) op(B) or as C^T = op(B)^T op(A)^T (then transposed back), whichever costs
 * less in padded tiles plus the copies that make its right operand contiguous. Matrix-vector products whose matrix
 * rows are contiguous take their own path (several rows' chains at a time in scalar fma, no copies).
 */
#define _POSIX_C_SOURCE 200809L
#include "stable_gemm.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define GEMM_X86 1
#include <immintrin.h>
#endif

/*
 * A micro-kernel continues the fma chains of an MR x NR block of C (row i at c[i], NR contiguous floats) over kc more
 * steps: step p multiplies left row i's value l[i][p * ls] into the right operand's row r + p * ldr. first: the chains
 * start at +0 instead of C's stored values.
 */
typedef void (*micro_kernel)(int kc, const float *const *l, ptrdiff_t ls, const float *r, ptrdiff_t ldr, float *const *c, bool first);

typedef struct {
  int mr, nr;
  micro_kernel run;
  /* relative speed per useful lane (measured), to weigh a tile's padding against its speed */
  double speed;
} tile_kernel;

#define MAX_MR 8
#define MAX_NR 128
/* K block: the chains are stored and reloaded between blocks, so the left block (M x KC) stays in cache */
#define KC 512

#ifdef GEMM_X86
/* The vector kernels, one per tile shape: MR rows x NV vectors of VW lanes (the loops unroll into registers). */
#define DEFINE_VECTOR_KERNEL(NAME, TARGET, VEC, VW, ZERO, LOAD, STORE, BCAST, FMA, MR, NV)                          \
  __attribute__((target(TARGET))) static void NAME(int kc, const float *const *l, ptrdiff_t ls, const float *r,    \
                                                   ptrdiff_t ldr, float *const *c, bool first) {                   \
    VEC acc[MR][NV];                                                                                              \
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                                        \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) acc[i][v] = first ? ZERO() : LOAD(c[i] + VW * v);       \
    }                                                                                                             \
    const float *lp[MR];                                                                                          \
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) lp[i] = l[i];                                            \
    for (int p = 0; p < kc; p++) {                                                                                \
      VEC b[NV];                                                                                                  \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) b[v] = LOAD(r + VW * v);                               \
      _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                                      \
        VEC a = BCAST(lp[i][p * ls]);                                                                             \
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) acc[i][v] = FMA(a, b[v], acc[i][v]);                 \
      }                                                                                                           \
      r += ldr;                                                                                                   \
    }                                                                                                             \
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++) {                                                        \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++) STORE(c[i] + VW * v, acc[i][v]);                        \
    }                                                                                                             \
  }

DEFINE_VECTOR_KERNEL(avx512_4x48, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, 4, 3)
DEFINE_VECTOR_KERNEL(avx512_8x32, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, 8, 2)
DEFINE_VECTOR_KERNEL(avx512_6x64, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, 6, 4)
DEFINE_VECTOR_KERNEL(avx512_1x128, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, 1, 8)
DEFINE_VECTOR_KERNEL(avx2_6x16, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, 6, 2)
DEFINE_VECTOR_KERNEL(avx2_4x24, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, 4, 3)
DEFINE_VECTOR_KERNEL(avx2_1x64, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, 1, 8)
#endif

/* The portable kernel: the same chains with the C library's fmaf (correctly rounded, like the vector fma). */
#define SCALAR_MR 4
#define SCALAR_NR 16
static void scalar_4x16(int kc, const float *const *l, ptrdiff_t ls, const float *r, ptrdiff_t ldr, float *const *c, bool first) {
  for (int i = 0; i < SCALAR_MR; i++) {
    for (int j = 0; j < SCALAR_NR; j++) {
      float acc = first ? 0.0f : c[i][j];
      for (int p = 0; p < kc; p++) acc = fmaf(l[i][p * ls], r[p * ldr + j], acc);
      c[i][j] = acc;
    }
  }
}

gemm_isa gemm_best_isa(void) {
#ifdef GEMM_X86
  /* the compiler's CPU check includes the operating system's support for the wider registers */
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return GEMM_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return GEMM_ISA_AVX2;
#endif
  return GEMM_ISA_SCALAR;
}

gemm_isa gemm_usable_isa(gemm_isa isa) {
  gemm_isa best = gemm_best_isa();
  return isa > best ? best : isa;
}

const char *gemm_isa_name(gemm_isa isa) {
  switch (isa) {
    case GEMM_ISA_AVX512: return "avx512";
    case GEMM_ISA_AVX2: return "avx2";
    default: return "scalar";
  }
}

static long padded(int size, int block) { return ((long)size + block - 1) / block * block; }

/* What a tile costs on an M x N product, per step of K: its padded area over its speed. */
static double tile_cost(tile_kernel t, int m, int n) { return (double)padded(m, t.mr) * padded(n, t.nr) / t.speed; }

/* The tile of `isa` that computes an M x N product fastest: its padded area over its speed (ties: the first listed). */
static tile_kernel choose_tile(gemm_isa isa, int m, int n) {
  tile_kernel scalar = {SCALAR_MR, SCALAR_NR, scalar_4x16, 1.0};
#ifdef GEMM_X86
  tile_kernel options[4];
  int count = 0;
  /* one-row tiles for matrix-vector shapes: each step loads as much as it multiplies, hence the low speed */
  if (isa == GEMM_ISA_AVX512) {
    options[count++] = (tile_kernel){4, 48, avx512_4x48, 1.0};
    options[count++] = (tile_kernel){6, 64, avx512_6x64, 1.0};
    options[count++] = (tile_kernel){8, 32, avx512_8x32, 0.85};
    options[count++] = (tile_kernel){1, 128, avx512_1x128, 0.35};
  } else if (isa == GEMM_ISA_AVX2) {
    options[count++] = (tile_kernel){6, 16, avx2_6x16, 1.0};
    options[count++] = (tile_kernel){4, 24, avx2_4x24, 0.95};
    options[count++] = (tile_kernel){1, 64, avx2_1x64, 0.35};
  } else {
    return scalar;
  }
  tile_kernel best = options[0];
  double best_cost = tile_cost(best, m, n);
  for (int t = 1; t < count; t++) {
    double cost = tile_cost(options[t], m, n);
    if (cost < best_cost) {
      best = options[t];
      best_cost = cost;
    }
  }
  return best;
#else
  (void)isa;
  (void)m;
  (void)n;
  return scalar;
#endif
}

/*
 * Matrix times vector, c[i] = chain over p of rows[i][p] * v[p], for rows i = 0..m-1 anywhere in memory: eight rows'
 * chains at a time in scalar fused multiply-adds (each row's values are contiguous, so no copy is needed; a vector
 * kernel would need the rows transposed). The same chains as the tiled kernels. `fma`: compiled for the FMA
 * instruction (else the C library's).
 */
#define DEFINE_DOT_ROWS(NAME, ATTR)                                                                                \
  ATTR static void NAME(int m, int k, const float *const *rows, const float *v, float *c) {                         \
    int i = 0;                                                                                                    \
    for (; i + 8 <= m; i += 8) {                                                                                  \
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                                    \
      const float *row[8];                                                                                        \
      _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) row[r] = rows[i + r];                                   \
      for (int p = 0; p < k; p++) {                                                                               \
        _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) acc[r] = fmaf(row[r][p], v[p], acc[r]);               \
      }                                                                                                           \
      for (int r = 0; r < 8; r++) c[i + r] = acc[r];                                                              \
    }                                                                                                             \
    for (; i < m; i++) {                                                                                          \
      float acc = 0.0f;                                                                                           \
      for (int p = 0; p < k; p++) acc = fmaf(rows[i][p], v[p], acc);                                             \
      c[i] = acc;                                                                                                 \
    }                                                                                                             \
  }
DEFINE_DOT_ROWS(dot_rows_portable, )
#ifdef GEMM_X86
DEFINE_DOT_ROWS(dot_rows_fma, __attribute__((target("fma"))))
#endif

void gemm_dot_rows(gemm_isa isa, int m, int k, const float *const *rows, const float *v, float *c) {
#ifdef GEMM_X86
  if (isa != GEMM_ISA_SCALAR) {
    dot_rows_fma(m, k, rows, v, c);
    return;
  }
#endif
  (void)isa;
  dot_rows_portable(m, k, rows, v, c);
}

/* gemm_dot_rows over the rows of a matrix with row stride lda, a block of row pointers at a time. */
static void gemv_rows(gemm_isa isa, int m, int k, const float *a, ptrdiff_t lda, const float *v, float *c) {
  enum { BLOCK = 256 };
  const float *rows[BLOCK];
  for (int i0 = 0; i0 < m; i0 += BLOCK) {
    int count = m - i0 < BLOCK ? m - i0 : BLOCK;
    for (int r = 0; r < count; r++) rows[r] = a + (ptrdiff_t)(i0 + r) * lda;
    gemm_dot_rows(isa, count, k, rows, v, c + i0);
  }
}

/* The cost of an M x N x K product with the best tile of `isa`, in multiply-add lanes at full speed. */
static double product_cost(gemm_isa isa, int m, int n, int k) { return tile_cost(choose_tile(isa, m, n), m, n) * k; }

/* dst[j * rows + i] = src[i * cols + j]: the [cols x rows] transpose of a row-major [rows x cols] matrix. */
static void transpose(const float *src, int rows, int cols, float *dst) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) dst[(size_t)j * rows + i] = src[(size_t)i * cols + j];
}

/* What copying one element (a transposition) costs, in multiply-add lanes: a core does ~32 of those per cycle. */
#define COPY_COST 64.0

/* One product of the core loop: C[M x N] (row stride ldc) = L[M x K] R[K x N]; L (i, p) at l[i*lr + p*lc], R (p, j) at r[p*ldr + j]. */
typedef struct {
  tile_kernel kernel;
  int m, n, k;
  const float *l;
  ptrdiff_t lr, lc;
  const float *r;
  ptrdiff_t ldr;
  float *c;
  ptrdiff_t ldc;
  /* the chains continue from C's stored values instead of starting at +0 */
  bool accumulate;
  /* the blocks this task computes: rows [begin, end) of C when rows_outer, else columns [begin, end) */
  bool rows_outer;
  int begin, end;
  int status;
} core_task;

static void *run_core(void *arg) {
  core_task *t = arg;
  const int mr_full = t->kernel.mr, nr_full = t->kernel.nr;
  /* the right edge's zero-padded panel; a block at an edge goes through a C tile */
  float *panel = malloc(sizeof(float) * KC * nr_full);
  float tile[MAX_MR * MAX_NR];
  if (!panel) {
    t->status = -1;
    return NULL;
  }
  int m0 = t->rows_outer ? t->begin : 0, m1 = t->rows_outer ? t->end : t->m;
  int n0 = t->rows_outer ? 0 : t->begin, n1 = t->rows_outer ? t->n : t->end;
  for (int k0 = 0; k0 < t->k; k0 += KC) {
    int kc = t->k - k0 < KC ? t->k - k0 : KC;
    bool first = k0 == 0 && !t->accumulate;
    /* the right edge (columns past the last whole panel), zero-padded to a whole panel once per K block */
    int edge_j0 = n0 + (n1 - n0) / nr_full * nr_full;
    if (edge_j0 < n1) {
      const float *src = t->r + (ptrdiff_t)k0 * t->ldr + edge_j0;
      for (int p = 0; p < kc; p++) {
        int j = 0;
        for (; j < n1 - edge_j0; j++) panel[p * nr_full + j] = src[p * t->ldr + j];
        for (; j < nr_full; j++) panel[p * nr_full + j] = 0.0f;
      }
    }
    /* the outer loop walks the larger operand once; the inner one reuses the smaller one's block from cache */
    int outer_count = t->rows_outer ? (m1 - m0 + mr_full - 1) / mr_full : (n1 - n0 + nr_full - 1) / nr_full;
    int inner_count = t->rows_outer ? (n1 - n0 + nr_full - 1) / nr_full : (m1 - m0 + mr_full - 1) / mr_full;
    for (int outer = 0; outer < outer_count; outer++) {
      for (int inner = 0; inner < inner_count; inner++) {
        int i0 = m0 + (t->rows_outer ? outer : inner) * mr_full;
        int j0 = n0 + (t->rows_outer ? inner : outer) * nr_full;
        int mr = m1 - i0 < mr_full ? m1 - i0 : mr_full;
        int nr = n1 - j0 < nr_full ? n1 - j0 : nr_full;
        const float *rp = nr < nr_full ? panel : t->r + (ptrdiff_t)k0 * t->ldr + j0;
        ptrdiff_t rstride = nr < nr_full ? nr_full : t->ldr;
        const float *lrow[MAX_MR];
        float *crow[MAX_MR];
        /* rows past the bottom edge repeat row i0 (their results are dropped) */
        for (int i = 0; i < mr_full; i++) lrow[i] = t->l + (ptrdiff_t)(i < mr ? i0 + i : i0) * t->lr + (ptrdiff_t)k0 * t->lc;
        if (mr == mr_full && nr == nr_full) {
          for (int i = 0; i < mr_full; i++) crow[i] = t->c + (ptrdiff_t)(i0 + i) * t->ldc + j0;
          t->kernel.run(kc, lrow, t->lc, rp, rstride, crow, first);
        } else {
          for (int i = 0; i < mr_full; i++) {
            crow[i] = tile + i * nr_full;
            if (!first && i < mr) memcpy(crow[i], t->c + (ptrdiff_t)(i0 + i) * t->ldc + j0, sizeof(float) * nr);
          }
          t->kernel.run(kc, lrow, t->lc, rp, rstride, crow, first);
          for (int i = 0; i < mr; i++) memcpy(t->c + (ptrdiff_t)(i0 + i) * t->ldc + j0, crow[i], sizeof(float) * nr);
        }
      }
    }
  }
  free(panel);
  t->status = 0;
  return NULL;
}

/* Products smaller than this (multiply-adds) run on one thread: handing them to the helpers would cost more than it saves. */
#define MIN_WORK_PER_THREAD (1L << 20)

/*
 * Helper threads kept for the process: a product split over threads hands its tasks to them instead of starting and
 * joining threads of its own (~40 products per denoiser evaluation; starting threads cost more than the work on VMs
 * where system calls are slow). Idle helpers sleep on a condition variable. One product at a time uses them
 * (dispatch), whichever JavaScript thread calls; the calling thread runs the first task and any a helper has not taken.
 */
static struct {
  pthread_mutex_t dispatch; /* held for a whole split product */
  pthread_mutex_t mu;       /* guards the fields below */
  pthread_cond_t work;      /* tasks were posted */
  pthread_cond_t done;      /* the last posted task finished */
  core_task *tasks;
  int next, count, helpers;
  atomic_int pending; /* posted tasks not finished (read without the lock while spinning) */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0};

/* Takes posted tasks until there are none (with pool.mu held; returns with it held). */
static void pool_drain(void) {
  while (pool.next < pool.count) {
    core_task *t = &pool.tasks[pool.next++];
    pthread_mutex_unlock(&pool.mu);
    run_core(t);
    pthread_mutex_lock(&pool.mu);
    if (atomic_fetch_sub(&pool.pending, 1) == 1) pthread_cond_signal(&pool.done);
  }
}

/* Split products posted so far (read without the lock by helpers waiting for the next one). */
static atomic_uint pool_posted;

/*
 * Pauses a helper spins through (~0.1-0.3 ms) waiting for the next product before it sleeps, and the caller waiting for
 * the helpers before it sleeps: an evaluation's products follow one another within tens of microseconds, and waking a
 * sleeping thread is a system call on each side (~50 us on a VM where they are slow). Spinning costs CPU only while
 * products follow each other, which is when the helpers have work.
 */
#define POOL_SPIN 20000

static inline void cpu_relax(void) {
#if GEMM_X86
  _mm_pause();
#endif
}

static void *pool_helper(void *arg) {
  (void)arg;
  pthread_mutex_lock(&pool.mu);
  for (;;) {
    pool_drain();
    unsigned seen = atomic_load(&pool_posted);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < POOL_SPIN && atomic_load_explicit(&pool_posted, memory_order_relaxed) == seen; i++) cpu_relax();
    pthread_mutex_lock(&pool.mu);
    while (pool.next >= pool.count && atomic_load(&pool_posted) == seen) pthread_cond_wait(&pool.work, &pool.mu);
  }
  return NULL;
}

/* Starts helpers until there are `wanted` (with pool.mu held); fewer if a thread cannot be started. */
static void pool_grow(int wanted) {
  while (pool.helpers < wanted) {
    pthread_t id;
    if (pthread_create(&id, NULL, pool_helper, NULL) != 0) return;
    pthread_detach(id);
    pool.helpers++;
  }
}

/* The core loop over threads: each one owns whole blocks of C (rows or columns), so no chain is ever split. */
static int gemm_core(gemm_isa isa, int m, int n, int k, const float *l, ptrdiff_t lr, ptrdiff_t lc, const float *r, ptrdiff_t ldr, float *c, ptrdiff_t ldc, bool accumulate, int threads) {
  core_task base = {choose_tile(isa, m, n), m, n, k, l, lr, lc, r, ldr, c, ldc, accumulate, m > n, 0, 0, 0};
  int block = base.rows_outer ? base.kernel.mr : base.kernel.nr;
  int blocks = ((base.rows_outer ? m : n) + block - 1) / block;
  long work = (long)m * n * k;
  int count = threads < 1 ? 1 : threads;
  if (count > blocks) count = blocks;
  while (count > 1 && work / count < MIN_WORK_PER_THREAD) count--;
  core_task tasks[256];
  if (count > 256) count = 256;
  for (int t = 0; t < count; t++) {
    tasks[t] = base;
    tasks[t].begin = (int)((long)blocks * t / count) * block;
    int end = (int)((long)blocks * (t + 1) / count) * block;
    int limit = base.rows_outer ? m : n;
    tasks[t].end = end < limit ? end : limit;
  }
  if (count == 1) {
    run_core(&tasks[0]);
    return tasks[0].status;
  }
  /* tasks 1.. go to the helpers (the caller takes those no helper has), task 0 runs here */
  pthread_mutex_lock(&pool.dispatch);
  pthread_mutex_lock(&pool.mu);
  pool_grow(count - 1);
  pool.tasks = tasks;
  pool.next = 1;
  pool.count = count;
  atomic_store(&pool.pending, count - 1);
  atomic_fetch_add(&pool_posted, 1);
  pthread_cond_broadcast(&pool.work);
  pthread_mutex_unlock(&pool.mu);
  run_core(&tasks[0]);
  pthread_mutex_lock(&pool.mu);
  pool_drain();
  pthread_mutex_unlock(&pool.mu);
  for (int i = 0; i < POOL_SPIN && atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; i++) cpu_relax();
  pthread_mutex_lock(&pool.mu);
  while (atomic_load(&pool.pending) > 0) pthread_cond_wait(&pool.done, &pool.mu);
  pool.tasks = NULL;
  pool.next = pool.count = 0;
  pthread_mutex_unlock(&pool.mu);
  pthread_mutex_unlock(&pool.dispatch);
  int status = 0;
  for (int t = 0; t < count; t++)
    if (tasks[t].status) status = tasks[t].status;
  return status;
}

int gemm_sgemm(bool trans_a, bool trans_b, int m, int n, int k, const float *a, const float *b, float *c, gemm_isa isa, int threads) {
  if (m <= 0 || n <= 0) return 0;
  if (k <= 0) {
    memset(c, 0, sizeof(float) * (size_t)m * n);
    return 0;
  }
  isa = gemm_usable_isa(isa);
  /* matrix times vector with contiguous rows: C = op(A) b with A untransposed, or C = a op(B) with B transposed
     (C[0, j] = chain of a[p] B[j, p]); a vector is contiguous whether transposed or not */
  if (n == 1 && !trans_a) {
    gemv_rows(isa, m, k, a, k, b, c);
    return 0;
  }
  if (m == 1 && trans_b) {
    gemv_rows(isa, n, k, b, k, a, c);
    return 0;
  }
  /* op(A) (i, p) = A[i*k + p] or A[p*m + i]; op(B) (p, j) = B[p*n + j] or B[j*k + p] */
  ptrdiff_t a_row = trans_a ? 1 : k, a_col = trans_a ? m : 1;
  /* direct: C = op(A) op(B), copying op(B) transposed when it is not contiguous along its columns; swapped:
     C^T = op(B)^T op(A)^T, copying op(A)^T when it is not, and transposing C^T back. Each costs its padded tiles (a
     matrix-vector product pads badly one way) plus its copies. */
  double direct_cost = product_cost(isa, m, n, k) + (trans_b ? COPY_COST * k * n : 0);
  double swapped_cost = product_cost(isa, n, m, k) + COPY_COST * ((trans_a ? 0 : (double)k * m) + (double)m * n);
  if (direct_cost <= swapped_cost) {
    const float *right = b;
    float *copy = NULL;
    if (trans_b) {
      copy = malloc(sizeof(float) * (size_t)k * n);
      if (!copy) return -1;
      transpose(b, n, k, copy); /* B is stored [N, K] */
      right = copy;
    }
    int status = gemm_core(isa, m, n, k, a, a_row, a_col, right, n, c, n, false, threads);
    free(copy);
    return status;
  }
  /* C^T[N x M] = op(B)^T[N x K] op(A)^T[K x M]: op(B)^T (j, p) = op(B) (p, j); op(A)^T (p, i) = op(A) (i, p) */
  ptrdiff_t b_row = trans_b ? k : 1, b_col = trans_b ? 1 : n;
  const float *right = a; /* contiguous along i when A is stored transposed ([K, M]) */
  float *copy = NULL;
  float *ct = malloc(sizeof(float) * (size_t)m * n);
  if (!ct) return -1;
  if (!trans_a) {
    copy = malloc(sizeof(float) * (size_t)k * m);
    if (!copy) {
      free(ct);
      return -1;
    }
    transpose(a, m, k, copy); /* A is stored [M, K] */
    right = copy;
  }
  int status = gemm_core(isa, n, m, k, b, b_row, b_col, right, m, ct, m, false, threads);
  transpose(ct, n, m, c);
  free(copy);
  free(ct);
  return status;
}

int gemm_strided(int m, int n, int k, const float *l, ptrdiff_t lr, ptrdiff_t lc, const float *r, ptrdiff_t ldr, float *c, ptrdiff_t ldc, bool accumulate, gemm_isa isa, int threads) {
  if (m <= 0 || n <= 0) return 0;
  if (k <= 0) {
    if (!accumulate)
      for (int i = 0; i < m; i++) memset(c + (ptrdiff_t)i * ldc, 0, sizeof(float) * n);
    return 0;
  }
  isa = gemm_usable_isa(isa);
  return gemm_core(isa, m, n, k, l, lr, lc, r, ldr, c, ldc, accumulate, threads);
}
