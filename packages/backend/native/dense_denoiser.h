/*
 * The dense optimal denoiser D*(x; t) = sum_j softmax_j(-||x - y_j||^2 / (2 t^2)) y_j in one pass over the training
 * set: blocks of points small enough to stay in cache are used by both products (the logits and the weighted sum)
 * before the next block is read, with the softmax streamed over the blocks (online log-sum-exp). See dense_denoiser.c.
 */
#ifndef TRAJLAB_DENSE_DENOISER_H
#define TRAJLAB_DENSE_DENOISER_H

#include <stddef.h>

#include "stable_gemm.h"

/*
 * Training points per block (dense_block_points): as many as DENSE_BLOCK_BYTES hold, so that a block stays in a core's
 * own (L2) cache between the two products, as a multiple of 16 from 16 to DENSE_BLOCK_MAX_POINTS: 128 points of 784
 * values (Fashion-MNIST), 32 of 3072 (CIFAR-10), 512 in low dimension. Blocks of 512 Fashion-MNIST images (1.6 MB)
 * left the L2 cache of an AMD EPYC VM: an evaluation of 32 queries took 9-10 ms instead of ~7.5 ms, and lost more of
 * its speed with the other core running the same kernel.
 */
#define DENSE_BLOCK_BYTES (400 * 1024)
#define DENSE_BLOCK_MAX_POINTS 512

/* Points per block for points of `dim` values (see DENSE_BLOCK_BYTES). */
int dense_block_points(int dim);

/*
 * Queries are taken in groups whose block of logits ([points of a block, queries of the group] floats) holds at most
 * DENSE_LOGITS_BYTES, so that it stays in cache through the passes over it (the logits' subtraction and maximum, the
 * weights and their sums, the weighted sum): in low dimension a block is 512 points, and 1024 queries made its logits
 * 2 MB. A group is a multiple of 16 queries, at least 16 (dense_group_queries). Rows are computed independently, so
 * groups change the speed, never the bits.
 */
#define DENSE_LOGITS_BYTES (256 * 1024)

/* Queries per group for blocks of `block` points (see DENSE_LOGITS_BYTES). */
int dense_group_queries(int block);

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
