/*
 * The dense optimal denoiser of dense_denoiser.h.
 *
 * D*(x; t) = sum_j w_j y_j / sum_j w_j with w_j = exp(l_j - m), l_j = (x / t^2) . y_j - (||y_j||^2 / 2) / t^2 (the
 * same logits, bit for bit, as the tensor path's two products) and m the row's largest logit. Two separate products
 * each stream the whole training set from memory (31 MB for Fashion-MNIST 10k, more than the cache holds); here the
 * set is read once, a block of dense_block_points(dim) points at a time, and both products use the block while it is
 * in cache.
 * The softmax is streamed over the blocks (online log-sum-exp): with M the largest logit so far, the running sum
 * S = sum_j exp(l_j - M) and accumulator A = sum_j exp(l_j - M) y_j are multiplied by exp(M_old - M_new) whenever a
 * block raises M, and D* = A / S at the end.
 *
 * Bits: every step is a fixed sequence of IEEE operations per row: the products are stable_gemm.h's chains (the
 * weighted sum one chain per coordinate across all blocks, gemm_accumulate), the exponential is dense_expf's
 * arithmetic (range reduction and a polynomial in fused multiply-adds, the same in the vector and scalar code), and a
 * block's weights are summed per query in one chain over its points. So a row's result never depends on the other
 * rows, the threads or the instruction set. The block's logits are kept transposed ([points, queries]): the first
 * product writes them so without a copy of the queries per block, the per-query passes run across queries (vectorised,
 * a query per lane), and the second product reads them as its left operand at a stride. Queries go in groups small
 * enough for a block's logits to stay in cache (dense_group_queries); rows never mix, so groups never change bits.
 */
#define _POSIX_C_SOURCE 200809L
#include "dense_denoiser.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define DENSE_X86 1
#include <immintrin.h>
#endif

/*
 * e^x for x <= 0 (x < EXP_MIN, and NaN, give 0): x = n ln 2 + r with n = rint(x log2 e) and |r| <= ln 2 / 2 (Cody-Waite,
 * ln 2 split in two so that n ln2_hi is exact), e^r by its Taylor polynomial of degree 7 in Horner form (truncation
 * below 6e-9 relative), times 2^n built in the exponent bits. Within a few float32 ulps of e^x.
 */
#define EXP_MIN (-87.0f)
#define LOG2E 1.44269504f
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
static const float EXP_POLY[8] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};

__attribute__((always_inline)) static inline float dense_expf(float x) {
  if (!(x >= EXP_MIN)) return 0.0f;
  float n = rintf(x * LOG2E);
  float r = fmaf(n, -LN2_HI, x);
  r = fmaf(n, -LN2_LO, r);
  float p = EXP_POLY[0];
  for (int i = 1; i < 8; i++) p = fmaf(p, r, EXP_POLY[i]);
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* dense_expf as a function of its own (for a pointer to it). */
static float dense_expf_scalar(float x) { return dense_expf(x); }

#ifdef DENSE_X86
/* dense_expf sixteen and eight lanes at a time: the same operations, so the same bits. */
__attribute__((target("avx512f"))) static inline __m512 exp16(__m512 x) {
  __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_MIN), _CMP_GE_OQ);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
  __m512 p = _mm512_set1_ps(EXP_POLY[0]);
  for (int k = 1; k < 8; k++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_POLY[k]));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mov_ps(live, _mm512_mul_ps(p, _mm512_castsi512_ps(e)));
}

__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
  __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_MIN), _CMP_GE_OQ);
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
  __m256 p = _mm256_set1_ps(EXP_POLY[0]);
  for (int k = 1; k < 8; k++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_POLY[k]));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(live, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* dense_expf compiled with the FMA instruction: fmaf and rintf inline instead of calls into libm (the same results:
   both are exact roundings whichever does them); for the per-query rescaling, once per query and block. */
__attribute__((target("avx2,fma"))) static float dense_expf_fma(float x) { return dense_expf(x); }

__attribute__((target("avx512f"))) static void exp_avx512(float *v, size_t count) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) _mm512_storeu_ps(v + i, exp16(_mm512_loadu_ps(v + i)));
  for (; i < count; i++) v[i] = dense_expf(v[i]);
}

__attribute__((target("avx2,fma"))) static void exp_avx2(float *v, size_t count) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(v + i, exp8(_mm256_loadu_ps(v + i)));
  for (; i < count; i++) v[i] = dense_expf(v[i]);
}
#endif

void dense_exp_inplace(gemm_isa isa, float *v, size_t count) {
#ifdef DENSE_X86
  isa = gemm_usable_isa(isa);
  if (isa == GEMM_ISA_AVX512) return exp_avx512(v, count);
  if (isa == GEMM_ISA_AVX2) return exp_avx2(v, count);
#endif
  (void)isa;
  for (size_t i = 0; i < count; i++) v[i] = dense_expf(v[i]);
}

/*
 * The per-query passes over a block's logits w ([nc points, b queries], row j at w + j * b). Each has a scalar form
 * and vector forms that do the same operations lane by lane (a lane is a query), in the same order over the points,
 * so the same bits; the vector forms leave the columns past the last whole vector to the scalar form (from i0).
 *
 * logits_top: w[j][i] -= f32(half_norm[j] * inv_t2), and top[i] = the largest of them (a NaN never raises it: it marks
 * its row in nan_row).
 */
static void logits_top_scalar(float *w, int nc, int b, int i0, const float *half_norm, float inv_t2, float *top, unsigned char *nan_row) {
  for (int j = 0; j < nc; j++) {
    float hn = half_norm[j] * inv_t2;
    float *wj = w + (size_t)j * b;
    for (int i = i0; i < b; i++) {
      float v = wj[i] - hn;
      wj[i] = v;
      if (v > top[i]) top[i] = v;
      else if (v != v) nan_row[i] = 1;
    }
  }
}

/*
 * weights: w[j][i] = e^(w[j][i] - shift[i]) (dense_expf, by `exp`: its FMA form beside the vector forms), and
 * block_sum[i] = their sum, one chain over j from 0.
 */
static void weights_scalar(float *w, int nc, int b, int i0, const float *shift, float *block_sum, float (*exp)(float)) {
  for (int i = i0; i < b; i++) block_sum[i] = 0.0f;
  for (int j = 0; j < nc; j++) {
    float *wj = w + (size_t)j * b;
    for (int i = i0; i < b; i++) {
      float e = exp(wj[i] - shift[i]);
      wj[i] = e;
      block_sum[i] += e;
    }
  }
}

#ifdef DENSE_X86
/* The lane operations the vector passes need beyond loads and arithmetic: keep t where v is not larger (a NaN never
   is), and the bits of the lanes that hold a NaN. */
__attribute__((target("avx512f"))) static inline __m512 select_gt16(__m512 v, __m512 t) { return _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(v, t, _CMP_GT_OQ), v); }
__attribute__((target("avx512f"))) static inline int nan_bits16(__m512 v) { return (int)_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); }
__attribute__((target("avx2,fma"))) static inline __m256 select_gt8(__m256 v, __m256 t) { return _mm256_blendv_ps(t, v, _mm256_cmp_ps(v, t, _CMP_GT_OQ)); }
__attribute__((target("avx2,fma"))) static inline int nan_bits8(__m256 v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)); }

/* logits_top_SUFFIX and weights_SUFFIX for vectors of VW lanes (the scalar forms do the columns past the last one). */
#define DEFINE_BLOCK_PASSES(SUFFIX, TARGET, VEC, VW, LOAD, STORE, SET1, SUB, ADD, EXP, SELECT_GT, NAN_BITS)                  \
  __attribute__((target(TARGET))) static void logits_top_##SUFFIX(float *w, int nc, int b, const float *half_norm, float inv_t2, \
                                                                  float *top, unsigned char *nan_row) {                      \
    int vb = b / VW * VW;                                                                                                     \
    for (int j = 0; j < nc; j++) {                                                                                            \
      VEC hn = SET1(half_norm[j] * inv_t2);                                                                                   \
      float *wj = w + (size_t)j * b;                                                                                          \
      for (int i = 0; i < vb; i += VW) {                                                                                      \
        VEC v = SUB(LOAD(wj + i), hn);                                                                                        \
        STORE(wj + i, v);                                                                                                     \
        STORE(top + i, SELECT_GT(v, LOAD(top + i)));                                                                          \
        int nan = NAN_BITS(v);                                                                                                \
        if (nan)                                                                                                              \
          for (int k = 0; k < VW; k++)                                                                                        \
            if (nan >> k & 1) nan_row[i + k] = 1;                                                                             \
      }                                                                                                                       \
    }                                                                                                                         \
    logits_top_scalar(w, nc, b, vb, half_norm, inv_t2, top, nan_row);                                                         \
  }                                                                                                                           \
  __attribute__((target(TARGET))) static void weights_##SUFFIX(float *w, int nc, int b, const float *shift, float *block_sum) { \
    int vb = b / VW * VW;                                                                                                     \
    for (int i = 0; i < vb; i++) block_sum[i] = 0.0f;                                                                         \
    for (int j = 0; j < nc; j++) {                                                                                            \
      float *wj = w + (size_t)j * b;                                                                                          \
      for (int i = 0; i < vb; i += VW) {                                                                                      \
        VEC e = EXP(SUB(LOAD(wj + i), LOAD(shift + i)));                                                                      \
        STORE(wj + i, e);                                                                                                     \
        STORE(block_sum + i, ADD(LOAD(block_sum + i), e));                                                                    \
      }                                                                                                                       \
    }                                                                                                                         \
    weights_scalar(w, nc, b, vb, shift, block_sum, dense_expf_fma);                                                           \
  }

DEFINE_BLOCK_PASSES(avx512, "avx512f", __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_sub_ps, _mm512_add_ps, exp16, select_gt16, nan_bits16)
DEFINE_BLOCK_PASSES(avx2, "avx2,fma", __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_sub_ps, _mm256_add_ps, exp8, select_gt8, nan_bits8)
#endif

/* The passes by instruction set; `isa` is usable already (dense_denoise takes gemm_usable_isa). */
static void logits_top(gemm_isa isa, float *w, int nc, int b, const float *half_norm, float inv_t2, float *top, unsigned char *nan_row) {
#ifdef DENSE_X86
  if (isa == GEMM_ISA_AVX512) return logits_top_avx512(w, nc, b, half_norm, inv_t2, top, nan_row);
  if (isa == GEMM_ISA_AVX2) return logits_top_avx2(w, nc, b, half_norm, inv_t2, top, nan_row);
#endif
  (void)isa;
  logits_top_scalar(w, nc, b, 0, half_norm, inv_t2, top, nan_row);
}

static void weights(gemm_isa isa, float *w, int nc, int b, const float *shift, float *block_sum) {
#ifdef DENSE_X86
  if (isa == GEMM_ISA_AVX512) return weights_avx512(w, nc, b, shift, block_sum);
  if (isa == GEMM_ISA_AVX2) return weights_avx2(w, nc, b, shift, block_sum);
#endif
  (void)isa;
  weights_scalar(w, nc, b, 0, shift, block_sum, dense_expf_scalar);
}

/*
 * Working memory reused from one call to the next (per thread): a call needs ~260 KB at batch 32 on Fashion-MNIST, and
 * memory freed at the end of each call would go back to the system and be faulted in again on the next.
 */
static _Thread_local struct {
  unsigned char *base;
  size_t size;
} scratch;

/* `bytes` of scratch memory (contents undefined), or NULL if it cannot be had. */
static unsigned char *scratch_reserve(size_t bytes) {
  if (bytes > scratch.size) {
    free(scratch.base);
    scratch.base = malloc(bytes);
    scratch.size = scratch.base ? bytes : 0;
  }
  return scratch.base;
}

/* Bytes of a scratch part of `count` elements of `size` bytes, rounded up to a cache line. */
static size_t part_bytes(size_t count, size_t size) { return (count * size + 63) / 64 * 64; }

int dense_block_points(int dim) {
  int points = (int)(DENSE_BLOCK_BYTES / ((size_t)(dim > 0 ? dim : 1) * sizeof(float))) / 16 * 16;
  return points < 16 ? 16 : points > DENSE_BLOCK_MAX_POINTS ? DENSE_BLOCK_MAX_POINTS : points;
}

int dense_group_queries(int block) {
  int queries = (int)(DENSE_LOGITS_BYTES / ((size_t)(block > 0 ? block : 1) * sizeof(float))) / 16 * 16;
  return queries < 16 ? 16 : queries;
}

/*
 * dense_denoise for one group of b queries, with a usable `isa` (gemm_usable_isa); `logits`, when not NULL, has rows
 * of n (the group's rows of the whole).
 */
static int dense_denoise_group(int n, int dim, const float *points, const float *half_norm, int b, const float *x, float inv_t2, gemm_isa isa, int threads, float *out, float *logits) {
  float (*scalar_exp)(float) = dense_expf_scalar;
#ifdef DENSE_X86
  if (isa >= GEMM_ISA_AVX2) scalar_exp = dense_expf_fma;
#endif
  int block_points = dense_block_points(dim);
  int block = n < block_points ? n : block_points;
  size_t w_bytes = part_bytes((size_t)block * b, sizeof(float)), qt_bytes = part_bytes((size_t)dim * b, sizeof(float));
  size_t acc_bytes = part_bytes((size_t)b * dim, sizeof(float)), row_bytes = part_bytes((size_t)b, sizeof(float));
  unsigned char *mem = scratch_reserve(w_bytes + qt_bytes + acc_bytes + 5 * row_bytes + part_bytes((size_t)b, 1));
  if (!mem) return -1;
  /* the block's logits and then weights, transposed: w[j * b + i] for point j of the block and query i */
  float *w = (float *)mem;
  mem += w_bytes;
  float *qt = (float *)mem;
  mem += qt_bytes;
  float *acc = (float *)mem;
  mem += acc_bytes;
  float *per_row[5];
  for (int r = 0; r < 5; r++, mem += row_bytes) per_row[r] = (float *)mem;
  float *run_max = per_row[0], *run_sum = per_row[1], *top = per_row[2], *shift = per_row[3], *block_sum = per_row[4];
  unsigned char *nan_row = mem;
  memset(acc, 0, sizeof(float) * (size_t)b * dim);
  memset(run_sum, 0, sizeof(float) * (size_t)b);
  memset(nan_row, 0, (size_t)b);
  /* the queries scaled as the tensor path scales them, x * (1 / t^2) (one float32 product per value), transposed:
     [dim, b], the right operand of every block's logits */
  for (int i = 0; i < b; i++)
    for (int p = 0; p < dim; p++) qt[(size_t)p * b + i] = x[(size_t)i * dim + p] * inv_t2;
  for (int i = 0; i < b; i++) run_max[i] = -INFINITY;
  for (int j0 = 0; j0 < n; j0 += block) {
    int nc = n - j0 < block ? n - j0 : block;
    const float *y = points + (size_t)j0 * dim;
    /* logits y_j . (x_i / t^2) (the product's chain over the coordinates), minus (||y_j||^2 / 2) / t^2 */
    if (gemm_strided(nc, b, dim, y, dim, 1, qt, b, w, b, false, isa, threads) != 0) return -1;
    for (int i = 0; i < b; i++) top[i] = -INFINITY;
    logits_top(isa, w, nc, b, half_norm + j0, inv_t2, top, nan_row);
    if (logits)
      for (int j = 0; j < nc; j++)
        for (int i = 0; i < b; i++) logits[(size_t)i * n + j0 + j] = w[(size_t)j * b + i];
    /* a larger maximum rescales what was summed under the old one (online log-sum-exp) */
    for (int i = 0; i < b; i++) {
      if (top[i] > run_max[i]) {
        if (run_max[i] != -INFINITY) {
          float scale = scalar_exp(run_max[i] - top[i]);
          run_sum[i] *= scale;
          for (int d = 0; d < dim; d++) acc[(size_t)i * dim + d] *= scale;
        }
        run_max[i] = top[i];
      }
      /* a query whose logits are all -inf so far keeps weight 0 (-inf - 0) */
      shift[i] = run_max[i] == -INFINITY ? 0.0f : run_max[i];
    }
    /* weights exp(l_j - M), every exponent <= 0, and their sum per query: one chain over the block's points */
    weights(isa, w, nc, b, shift, block_sum);
    for (int i = 0; i < b; i++) run_sum[i] += block_sum[i];
    /* A += weights . block: the weights read transposed, each coordinate's chain continued from the previous blocks */
    if (gemm_strided(b, dim, nc, w, 1, b, y, dim, acc, dim, true, isa, threads) != 0) return -1;
  }
  for (int i = 0; i < b; i++)
    for (int d = 0; d < dim; d++) out[(size_t)i * dim + d] = nan_row[i] ? NAN : acc[(size_t)i * dim + d] / run_sum[i];
  return 0;
}

int dense_denoise(int n, int dim, const float *points, const float *half_norm, int b, const float *x, float inv_t2, gemm_isa isa, int threads, float *out, float *logits) {
  isa = gemm_usable_isa(isa);
  int block_points = dense_block_points(dim);
  int group = dense_group_queries(n < block_points ? n : block_points);
  for (int i0 = 0; i0 < b; i0 += group) {
    int g = b - i0 < group ? b - i0 : group;
    if (dense_denoise_group(n, dim, points, half_norm, g, x + (size_t)i0 * dim, inv_t2, isa, threads, out + (size_t)i0 * dim, logits ? logits + (size_t)i0 * n : NULL) != 0) return -1;
  }
  return 0;
}
