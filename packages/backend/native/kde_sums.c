/*
 * The KDE gain's exponential sums of kde_sums.h.
 *
 * kde_exp: x = n ln 2 + r with n = x log2 e rounded to the nearest integer (adding and subtracting 1.5 * 2^52) and
 * |r| <= ln 2 / 2 (Cody-Waite: ln 2 split in two so that n ln2_hi is exact), e^r by its Taylor polynomial of degree 13
 * in Horner form (truncation below 1e-17 relative), times 2^n built in the exponent bits. Every operation is a plain
 * IEEE double multiply, add or subtract, never fused into a multiply-add (the vector code calls separate multiplies
 * and adds; `#pragma STDC FP_CONTRACT OFF` for compilers that honour it, and GCC does not contract in ISO C mode, which
 * the build's -std=c11 selects), so the vector lanes, the scalar code and JavaScript's doubles agree bit for bit.
 * Within a few ulps of e^x. Below -700 the result is 0: such a term is below 1e-304, and every sum here has a term of
 * exactly 1 (its maximum's), so it could not change the sum.
 */
#include "kde_sums.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define KDE_X86 1
#include <immintrin.h>
#endif

#pragma STDC FP_CONTRACT OFF

#define KDE_EXP_MIN (-700.0)
#define KDE_LOG2E 1.4426950408889634
#define KDE_LN2_HI 6.93147180369123816490e-01
#define KDE_LN2_LO 1.90821492927058770002e-10
/* 1.5 * 2^52: adding it rounds a double of magnitude below 2^51 to an integer, held in the low mantissa bits. */
#define KDE_ROUND 6755399441055744.0
#define KDE_LANES 8
/* 1/13!, 1/12!, ..., 1/1!, 1/0!: e^r's Taylor coefficients from the highest degree down. */
static const double KDE_POLY[14] = {
    1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
    1.0 / 720.0,        1.0 / 120.0,       1.0 / 24.0,       1.0 / 6.0,       0.5,            1.0,          1.0};

double kde_exp(double x) {
  if (x < KDE_EXP_MIN) return 0.0;
  double t = x * KDE_LOG2E + KDE_ROUND;
  double n = t - KDE_ROUND;
  double r = (x - n * KDE_LN2_HI) - n * KDE_LN2_LO;
  double p = KDE_POLY[0];
  for (int i = 1; i < 14; i++) p = p * r + KDE_POLY[i];
  // 2^n: the integer n sits in t's low bits; n + 1023 shifted into the exponent field (n >= -1010 here; for NaN the
  // scale is some number and p is NaN already)
  uint64_t bits;
  memcpy(&bits, &t, sizeof bits);
  bits = (bits + 1023) << 52;
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* The eight lanes joined in the fixed order of kde_sums.h. */
static double join_lanes(const double *lane) {
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* z_j = (a_j - m0) + c_j, as kdeGain has always computed it. */
static double shifted(float a, float dy, double m0, double row_term, double inv_t2) {
  return ((double)a - m0) + ((2.0 * (double)dy - row_term) * 0.5) * inv_t2;
}

/* The maxima m0 and m1 of a row (the first largest value; comparisons, so exact on any instruction set). */
static void row_maxima(int size, const float *a, const float *dy, double row_term, double inv_t2, double *m0, double *m1) {
  double m = -INFINITY;
  for (int j = 0; j < size; j++) m = (double)a[j] > m ? (double)a[j] : m;
  double z = -INFINITY;
  for (int j = 0; j < size; j++) {
    double v = shifted(a[j], dy[j], m, row_term, inv_t2);
    z = v > z ? v : z;
  }
  *m0 = m;
  *m1 = z;
}

/* The lanes' sums of j from `from` to size - 1, one term at a time (lane j mod 8). */
static void sums_scalar(int from, int size, const float *a, const float *dy, double m0, double m1, double row_term, double inv_t2, double *l0, double *l1) {
  for (int j = from; j < size; j++) {
    l0[j % KDE_LANES] += kde_exp((double)a[j] - m0);
    l1[j % KDE_LANES] += kde_exp(shifted(a[j], dy[j], m0, row_term, inv_t2) - m1);
  }
}

#ifdef KDE_X86
/* kde_exp of eight lanes with AVX-512: the same operations. */
__attribute__((target("avx512f"))) static __m512d exp_avx512(__m512d x) {
  __mmask8 dead = _mm512_cmp_pd_mask(x, _mm512_set1_pd(KDE_EXP_MIN), _CMP_LT_OQ);
  __m512d t = _mm512_add_pd(_mm512_mul_pd(x, _mm512_set1_pd(KDE_LOG2E)), _mm512_set1_pd(KDE_ROUND));
  __m512d n = _mm512_sub_pd(t, _mm512_set1_pd(KDE_ROUND));
  __m512d r = _mm512_sub_pd(_mm512_sub_pd(x, _mm512_mul_pd(n, _mm512_set1_pd(KDE_LN2_HI))), _mm512_mul_pd(n, _mm512_set1_pd(KDE_LN2_LO)));
  __m512d p = _mm512_set1_pd(KDE_POLY[0]);
  for (int i = 1; i < 14; i++) p = _mm512_add_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(KDE_POLY[i]));
  __m512i e = _mm512_slli_epi64(_mm512_add_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(1023)), 52);
  return _mm512_mask_mov_pd(_mm512_mul_pd(p, _mm512_castsi512_pd(e)), dead, _mm512_setzero_pd());
}

__attribute__((target("avx512f"))) static int sums_avx512(int size, const float *a, const float *dy, double m0, double m1, double row_term, double inv_t2, double *l0, double *l1) {
  __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
  const __m512d vm0 = _mm512_set1_pd(m0), vm1 = _mm512_set1_pd(m1), vrow = _mm512_set1_pd(row_term), vinv = _mm512_set1_pd(inv_t2);
  int j = 0;
  for (; j + KDE_LANES <= size; j += KDE_LANES) {
    __m512d va = _mm512_cvtps_pd(_mm256_loadu_ps(a + j));
    __m512d vdy = _mm512_cvtps_pd(_mm256_loadu_ps(dy + j));
    __m512d d = _mm512_sub_pd(va, vm0);
    // eight terms that are all below KDE_EXP_MIN add exact zeros: skipped, the same bits (at small sigma, most are)
    if (_mm512_cmp_pd_mask(d, _mm512_set1_pd(KDE_EXP_MIN), _CMP_NLT_UQ)) acc0 = _mm512_add_pd(acc0, exp_avx512(d));
    __m512d c = _mm512_mul_pd(_mm512_mul_pd(_mm512_sub_pd(_mm512_mul_pd(_mm512_set1_pd(2.0), vdy), vrow), _mm512_set1_pd(0.5)), vinv);
    __m512d z = _mm512_sub_pd(_mm512_add_pd(d, c), vm1);
    if (_mm512_cmp_pd_mask(z, _mm512_set1_pd(KDE_EXP_MIN), _CMP_NLT_UQ)) acc1 = _mm512_add_pd(acc1, exp_avx512(z));
  }
  _mm512_storeu_pd(l0, acc0);
  _mm512_storeu_pd(l1, acc1);
  return j;
}

/* kde_exp of four lanes with AVX2 (two vectors make the eight lanes). */
__attribute__((target("avx2"))) static __m256d exp_avx2(__m256d x) {
  __m256d live = _mm256_cmp_pd(x, _mm256_set1_pd(KDE_EXP_MIN), _CMP_NLT_UQ);
  __m256d t = _mm256_add_pd(_mm256_mul_pd(x, _mm256_set1_pd(KDE_LOG2E)), _mm256_set1_pd(KDE_ROUND));
  __m256d n = _mm256_sub_pd(t, _mm256_set1_pd(KDE_ROUND));
  __m256d r = _mm256_sub_pd(_mm256_sub_pd(x, _mm256_mul_pd(n, _mm256_set1_pd(KDE_LN2_HI))), _mm256_mul_pd(n, _mm256_set1_pd(KDE_LN2_LO)));
  __m256d p = _mm256_set1_pd(KDE_POLY[0]);
  for (int i = 1; i < 14; i++) p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(KDE_POLY[i]));
  __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52);
  return _mm256_and_pd(live, _mm256_mul_pd(p, _mm256_castsi256_pd(e)));
}

__attribute__((target("avx2"))) static int sums_avx2(int size, const float *a, const float *dy, double m0, double m1, double row_term, double inv_t2, double *l0, double *l1) {
  __m256d acc0[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()}, acc1[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  const __m256d vm0 = _mm256_set1_pd(m0), vm1 = _mm256_set1_pd(m1), vrow = _mm256_set1_pd(row_term), vinv = _mm256_set1_pd(inv_t2);
  int j = 0;
  for (; j + KDE_LANES <= size; j += KDE_LANES) {
    for (int h = 0; h < 2; h++) {
      __m256d va = _mm256_cvtps_pd(_mm_loadu_ps(a + j + 4 * h));
      __m256d vdy = _mm256_cvtps_pd(_mm_loadu_ps(dy + j + 4 * h));
      __m256d d = _mm256_sub_pd(va, vm0);
      // four terms that are all below KDE_EXP_MIN add exact zeros: skipped, the same bits
      if (_mm256_movemask_pd(_mm256_cmp_pd(d, _mm256_set1_pd(KDE_EXP_MIN), _CMP_NLT_UQ))) acc0[h] = _mm256_add_pd(acc0[h], exp_avx2(d));
      __m256d c = _mm256_mul_pd(_mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(_mm256_set1_pd(2.0), vdy), vrow), _mm256_set1_pd(0.5)), vinv);
      __m256d z = _mm256_sub_pd(_mm256_add_pd(d, c), vm1);
      if (_mm256_movemask_pd(_mm256_cmp_pd(z, _mm256_set1_pd(KDE_EXP_MIN), _CMP_NLT_UQ))) acc1[h] = _mm256_add_pd(acc1[h], exp_avx2(z));
    }
  }
  _mm256_storeu_pd(l0, acc0[0]);
  _mm256_storeu_pd(l0 + 4, acc0[1]);
  _mm256_storeu_pd(l1, acc1[0]);
  _mm256_storeu_pd(l1 + 4, acc1[1]);
  return j;
}
#endif

void kde_sums(gemm_isa isa, int b, int size, const float *a, const float *dy, const double *row_term, double inv_t2, double *out) {
#ifdef KDE_X86
  isa = gemm_usable_isa(isa);
#endif
  for (int r = 0; r < b; r++) {
    const float *ar = a + (size_t)r * size;
    const float *dr = dy + (size_t)r * size;
    double m0, m1;
    row_maxima(size, ar, dr, row_term[r], inv_t2, &m0, &m1);
    double l0[KDE_LANES] = {0}, l1[KDE_LANES] = {0};
    int done = 0;
#ifdef KDE_X86
    if (isa == GEMM_ISA_AVX512) done = sums_avx512(size, ar, dr, m0, m1, row_term[r], inv_t2, l0, l1);
    else if (isa == GEMM_ISA_AVX2) done = sums_avx2(size, ar, dr, m0, m1, row_term[r], inv_t2, l0, l1);
#else
    (void)isa;
#endif
    sums_scalar(done, size, ar, dr, m0, m1, row_term[r], inv_t2, l0, l1);
    out[4 * r] = m0;
    out[4 * r + 1] = join_lanes(l0);
    out[4 * r + 2] = m1;
    out[4 * r + 3] = join_lanes(l1);
  }
}
