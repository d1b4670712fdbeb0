/*
 * Certified pruning of the optimal denoiser (pruned_denoiser.h), one row at a time so that a row's result never
 * depends on the rows evaluated with it.
 *
 * With P the rank principal axes and p_j = P^T (y_j - mean), LB_j = ||P^T (x - mean) - p_j|| <= ||x - y_j|| bounds
 * every distance from below (P is orthonormal), and the exact distance UB to the point of smallest LB bounds the
 * nearest distance from above. Point j has weight w_j / w_max <= exp(-(LB_j^2 - UB^2) / (2 t^2)), so the points with
 * LB_j^2 - UB^2 > cutoff = 2 t^2 log(n / tolerance) carry at most `tolerance` times the largest weight in total and are
 * skipped. The squared bounds are computed in the expanded form ||P^T (x - mean)||^2 - 2 (P^T (x - mean)) . p_j +
 * ||p_j||^2, all rows at once by one product with the table, with both squared norms shrunk by 1e-5 so that float32
 * rounding never makes a bound exceed the true distance.
 *
 * A kept row is the dense kernel restricted to its points: logits (x / t^2) . y_j - (||y_j||^2 / 2) / t^2 with the
 * product's own chains (gemm_dot_rows), a softmax, and sum_j w_j y_j as one fused multiply-add chain over the kept
 * points per coordinate, in increasing j. The vector and portable paths give the same bits.
 */
#define _POSIX_C_SOURCE 200809L
#include "pruned_denoiser.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#define PRUNED_X86 1
#include <immintrin.h>
#endif

/* Relative margin of the squared norms in the expanded-form bounds (the table is built with the same). */
#define LB_MARGIN 1e-5f

/* out[d] = chain over i of w[i] * rows[i][d]: the weighted sum of a kept row's points, one chain per coordinate. */
static void weighted_sum_portable(int count, int dim, const float *w, const float *const *rows, float *out) {
  for (int d = 0; d < dim; d++) out[d] = 0.0f;
  for (int i = 0; i < count; i++)
    for (int d = 0; d < dim; d++) out[d] = fmaf(w[i], rows[i][d], out[d]);
}

#ifdef PRUNED_X86
/* The same chains eight coordinates at a time (lanes never mix, so the bits equal the portable path's). */
__attribute__((target("avx2,fma"))) static void weighted_sum_avx2(int count, int dim, const float *w, const float *const *rows, float *out) {
  int d = 0;
  for (; d + 8 <= dim; d += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < count; i++) acc = _mm256_fmadd_ps(_mm256_set1_ps(w[i]), _mm256_loadu_ps(rows[i] + d), acc);
    _mm256_storeu_ps(out + d, acc);
  }
  for (; d < dim; d++) {
    float acc = 0.0f;
    for (int i = 0; i < count; i++) acc = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(w[i]), _mm_set_ss(rows[i][d]), _mm_set_ss(acc)));
    out[d] = acc;
  }
}
#endif

static void weighted_sum(gemm_isa isa, int count, int dim, const float *w, const float *const *rows, float *out) {
#ifdef PRUNED_X86
  if (isa != GEMM_ISA_SCALAR) {
    weighted_sum_avx2(count, dim, w, rows, out);
    return;
  }
#endif
  weighted_sum_portable(count, dim, w, rows, out);
}

/* Working memory of one call, grown as needed and kept (the binding is only called from JavaScript's thread). */
static void *scratch = NULL;
static size_t scratch_bytes = 0;

static void *scratch_of(size_t bytes) {
  if (bytes > scratch_bytes) {
    void *grown = realloc(scratch, bytes);
    if (!grown) return NULL;
    scratch = grown;
    scratch_bytes = bytes;
  }
  return scratch;
}

/* Aligned offsets into the scratch block. */
static size_t take(size_t *offset, size_t bytes) {
  size_t at = *offset;
  *offset += (bytes + 63) / 64 * 64;
  return at;
}

/* D* of one row from its kept points idx[0..count-1]; logits, rows: count entries of working memory. */
static void denoise_kept(const pruned_set *set, const float *x, float inv_t2, const int32_t *idx, int count, gemm_isa isa, float *xs, float *logits, const float **rows, float *out) {
  int dim = set->dim;
  for (int d = 0; d < dim; d++) xs[d] = x[d] * inv_t2;
  for (int i = 0; i < count; i++) rows[i] = set->points + (ptrdiff_t)idx[i] * dim;
  gemm_dot_rows(isa, count, dim, rows, xs, logits);
  float top = -INFINITY;
  for (int i = 0; i < count; i++) {
    logits[i] -= set->half_norm[idx[i]] * inv_t2;
    if (logits[i] > top) top = logits[i];
  }
  float sum = 0.0f;
  for (int i = 0; i < count; i++) {
    logits[i] = expf(logits[i] - top);
    sum += logits[i];
  }
  for (int i = 0; i < count; i++) logits[i] /= sum;
  weighted_sum(isa, count, dim, logits, rows, out);
}

int pruned_denoise(const pruned_set *set, int b, const float *x, double t, double cutoff, int max_kept, gemm_isa isa, float *out, int32_t *kept) {
  int n = set->n, dim = set->dim, rank = set->rank, width = rank + 2;
  if (b <= 0) return 0;
  if (max_kept > n) max_kept = n;
  size_t offset = 0;
  size_t o_centered = take(&offset, sizeof(float) * (size_t)b * dim);
  size_t o_projected = take(&offset, sizeof(float) * (size_t)b * rank);
  size_t o_queries = take(&offset, sizeof(float) * (size_t)b * width);
  size_t o_bounds = take(&offset, sizeof(float) * (size_t)b * n);
  size_t o_bounded = take(&offset, sizeof(int) * (size_t)b);
  size_t o_idx = take(&offset, sizeof(int32_t) * ((size_t)max_kept + 1));
  size_t o_logits = take(&offset, sizeof(float) * ((size_t)max_kept + 1));
  size_t o_rows = take(&offset, sizeof(float *) * ((size_t)max_kept + 1));
  size_t o_xs = take(&offset, sizeof(float) * (size_t)dim);
  char *base = scratch_of(offset);
  if (!base) return -1;
  float *centered = (float *)(base + o_centered), *projected = (float *)(base + o_projected);
  float *queries = (float *)(base + o_queries), *bounds = (float *)(base + o_bounds);
  int *bounded = (int *)(base + o_bounded);
  int32_t *idx = (int32_t *)(base + o_idx);
  float *logits = (float *)(base + o_logits), *xs = (float *)(base + o_xs);
  const float **rows = (const float **)(base + o_rows);

  /* P^T (x - mean) for every row */
  for (int r = 0; r < b; r++)
    for (int d = 0; d < dim; d++) centered[(size_t)r * dim + d] = x[(size_t)r * dim + d] - set->mean[d];
  if (gemm_sgemm(false, false, b, rank, dim, centered, set->basis, projected, isa, 1) != 0) return -1;

  /* Rows where no point can be skipped go dense without bounds. With a = ||P^T (x - mean)||, b = ||(I - P P^T) (x -
     mean)|| and the radii R, rho of the set: LB_j <= a + R for every j, and every distance, so UB too, is at least
     sqrt((a - R)+^2 + (b - rho)+^2); so LB_j^2 - UB^2 <= (a + R)^2 - (a - R)+^2 - (b - rho)+^2. The squared norms carry
     a 1e-4 margin against float32 rounding (a wrong answer here would only cost speed: the row goes dense). */
  double radius = set->max_projected, rho = set->max_residual;
  int nb = 0;
  for (int r = 0; r < b; r++) {
    float norm = 0.0f;
    for (int k = 0; k < rank; k++) norm += projected[(size_t)r * rank + k] * projected[(size_t)r * rank + k];
    double whole = 0.0;
    for (int d = 0; d < dim; d++) whole += (double)centered[(size_t)r * dim + d] * centered[(size_t)r * dim + d];
    double a = sqrt((double)norm * (1.0 + 1e-4));
    double across2 = whole * (1.0 - 1e-4) - (double)norm * (1.0 + 1e-4);
    double across = across2 > 0.0 ? sqrt(across2) : 0.0;
    double far = (a + radius) * (a + radius);
    double near_within = a > radius ? (a - radius) * (a - radius) : 0.0;
    double near_across = across > rho ? (across - rho) * (across - rho) : 0.0;
    if (far - near_within - near_across <= cutoff) {
      kept[r] = -1;
      continue;
    }
    float *q = queries + (size_t)nb * width;
    for (int k = 0; k < rank; k++) q[k] = projected[(size_t)r * rank + k];
    q[rank] = norm * (1.0f - LB_MARGIN);
    q[rank + 1] = 1.0f;
    bounded[nb++] = r;
  }
  if (nb == 0) return 0;
  /* the squared lower bounds of the remaining rows: [nb, n] */
  if (gemm_sgemm(false, false, nb, n, width, queries, set->table, bounds, isa, 1) != 0) return -1;

  float inv_t2 = (float)(1.0 / (t * t));
  for (int q = 0; q < nb; q++) {
    int r = bounded[q];
    const float *lb = bounds + (size_t)q * n;
    const float *xr = x + (size_t)r * dim;
    int nearest = 0;
    float lo = lb[0], hi = lb[0];
    for (int j = 1; j < n; j++) {
      if (lb[j] < lo) {
        lo = lb[j];
        nearest = j;
      }
      if (lb[j] > hi) hi = lb[j];
    }
    double ub2 = 0.0;
    const float *yn = set->points + (ptrdiff_t)nearest * dim;
    for (int d = 0; d < dim; d++) {
      double diff = (double)xr[d] - (double)yn[d];
      ub2 += diff * diff;
    }
    kept[r] = -1;
    if ((double)hi - ub2 <= cutoff) continue; /* nothing can be skipped */
    int count = 0;
    for (int j = 0; j < n && count <= max_kept; j++)
      if ((double)lb[j] - ub2 <= cutoff) idx[count++] = j;
    if (count > max_kept) continue; /* too many points for the row-wise product: dense */
    denoise_kept(set, xr, inv_t2, idx, count, isa, xs, logits, rows, out + (size_t)r * dim);
    kept[r] = count;
  }
  return 0;
}
