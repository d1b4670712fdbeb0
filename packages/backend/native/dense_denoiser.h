/*
 * The dense optimal denoiser D*(x; t) = sum_j softmax_j(-||x - y_j||^2 / (2 t^2)) y_j in one pass over the training
 * set: blocks of points small enough to stay in cache are used by both products (the logits and the weighted sum)
 * before the next block is read, with the softmax streamed over the blocks (online log-sum-exp). See dense_denoiser.c.
 */
#ifndef TRAJLAB_DENSE_DENOISER_H
#define TRAJLAB_DENSE_DENOISER_H

#include <stddef.h>

#include "stable_gemm.h"

/* Training points per block: 512 x 784 float32 (Fashion-MNIST) is 1.6 MB, which stays in cache between the products. */
#define DENSE_BLOCK 512

/*
 * out[b, dim] = D*(x; t) for the b rows of x ([b, dim]) over the n points ([n, dim], with half_norm[j] = ||y_j||^2 / 2
 * in float32), inv_t2 = 1 / t^2 in float32. `logits` ([b, n]) receives (x * inv_t2) . y_j - half_norm[j] * inv_t2 when
 * not NULL. A row's bits depend on that row alone (never on b, the threads or the instruction set). Returns 0, or -1
 * when memory ran out.
 */
int dense_denoise(int n, int dim, const float *points, const float *half_norm, int b, const float *x, float inv_t2, gemm_isa isa, int threads, float *out, float *logits);

/* e^x for every x <= 0 of v (in place), by dense_expf's arithmetic on every instruction set (exported for the tests). */
void dense_exp_inplace(gemm_isa isa, float *v, size_t count);

#endif
