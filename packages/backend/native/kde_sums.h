/*
 * The exponential sums of the KDE gain metric (trajlab's TrainingSet.kdeGain), per query row over one chunk of the
 * training set, in float64: with a_j the row's logits at x (bandwidth t) and c_j = (2 delta . y_j - rowTerm) / (2 t^2),
 *   m0 = max_j a_j,  s0 = sum_j e^(a_j - m0),  z_j = (a_j - m0) + c_j,  m1 = max_j z_j,  s1 = sum_j e^(z_j - m1).
 * Bits: the exponential is kde_exp's fixed sequence of IEEE double operations (no fused multiply-add), and each sum
 * is taken in eight lanes (lane l adds the terms j = l mod 8 in order of j) joined as ((l0 + l1) + (l2 + l3)) +
 * ((l4 + l5) + (l6 + l7)): the same bits in the vector and scalar code, on every instruction set, and the same as the
 * JavaScript of packages/denoisers/src/kde-sums.ts, which does the same operations in the same order.
 */
#ifndef TRAJLAB_KDE_SUMS_H
#define TRAJLAB_KDE_SUMS_H

#include <stddef.h>

#include "stable_gemm.h"

/* e^x in float64 for x <= 0: 0 below -700, NaN for NaN (see kde_sums.c). */
double kde_exp(double x);

/*
 * For each of the b rows: a and dy are [b, size] row-major (the logits at x and the products delta . y_j), row_term[r]
 * = delta . (x + x') of row r, inv_t2 = 1 / t^2; out[4r .. 4r + 3] = m0, s0, m1, s1.
 */
void kde_sums(gemm_isa isa, int b, int size, const float *a, const float *dy, const double *row_term, double inv_t2, double *out);

#endif
