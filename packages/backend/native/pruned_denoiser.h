/*
 * Certified pruning of the optimal denoiser D*(x; t) = sum_j softmax_j(-||x - y_j||^2 / (2 t^2)) y_j, row by row, on
 * the host: the rows whose far training points provably carry negligible weight are computed from their few near
 * points here; the others are left to the dense kernel. See pruned_denoiser.c and the TrainingSet of @trajlab/denoisers.
 */
#ifndef TRAJLAB_PRUNED_DENOISER_H
#define TRAJLAB_PRUNED_DENOISER_H

#include <stdint.h>

#include "stable_gemm.h"

/* A training set {y_j} with its bound tables (every array row-major float32). */
typedef struct {
  int n, dim, rank;
  /* [n, dim]: the points */
  const float *points;
  /* [n]: ||y_j||^2 / 2, the same float32 values the dense kernel uses */
  const float *half_norm;
  /* [dim] and [dim, rank]: the centre and the orthonormal axes P of the lower bound */
  const float *mean;
  const float *basis;
  /* [rank + 2, n]: the columns (-2 p_j, 1, (1 - 1e-5) ||p_j||^2) with p_j = P^T (y_j - mean) */
  const float *table;
  /* max_j ||p_j|| and max_j ||(I - P P^T) (y_j - mean)||: the radii of the set within the axes and across them */
  double max_projected, max_residual;
} pruned_set;

/*
 * For each of the b rows of x ([b, dim]) at noise level t: kept[r] = the number of training points row r needs, with
 * out[r] ([b, dim]) its denoised value, or kept[r] = -1 when the row must be computed densely (out[r] untouched):
 * nothing can be skipped, or more than max_kept points remain. `cutoff` = 2 t^2 log(n / tolerance). Returns 0, or -1
 * when memory ran out.
 */
int pruned_denoise(const pruned_set *set, int b, const float *x, double t, double cutoff, int max_kept, gemm_isa isa, float *out, int32_t *kept);

#endif
