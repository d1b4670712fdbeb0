/*
 * A row-stable single-precision matrix product: every element of C = op(A) op(B) is the chain of fused multiply-adds
 *   c = 0; for p = 0 .. K-1: c = fma(op(A)[i, p], op(B)[p, j], c)
 * in that order, whatever M, N, the tiling, the vector width or the number of threads. So a row's bits never depend on
 * the rows computed with it, and the AVX-512, AVX2 and portable scalar paths give the same bits (IEEE fma is exact
 * before its one rounding). See stable_gemm.c.
 */
#ifndef TRAJLAB_STABLE_GEMM_H
#define TRAJLAB_STABLE_GEMM_H

#include <stdbool.h>
#include <stddef.h>

/* The instruction sets the product can use, fastest last. */
typedef enum { GEMM_ISA_SCALAR = 0, GEMM_ISA_AVX2 = 1, GEMM_ISA_AVX512 = 2 } gemm_isa;

/* The fastest instruction set this CPU (and its operating system) supports. */
gemm_isa gemm_best_isa(void);

/* `isa`, or gemm_best_isa() when `isa` asks for more than the CPU has (what every kernel runs with). */
gemm_isa gemm_usable_isa(gemm_isa isa);

/* The name of an instruction set: "scalar", "avx2", "avx512". */
const char *gemm_isa_name(gemm_isa isa);

/*
 * C[M, N] = op(A)[M, K] op(B)[K, N] for row-major A, B, C (op = optional transpose), with `isa` (at most
 * gemm_best_isa()) and up to `threads` threads. K = 0 gives zeros. Returns 0, or -1 when memory ran out (C is then
 * unspecified).
 */
int gemm_sgemm(bool trans_a, bool trans_b, int m, int n, int k, const float *a, const float *b, float *c, gemm_isa isa, int threads);

/*
 * C[M, N] (row stride ldc) = L[M, K] R[K, N] with L (i, p) at l[i * lr + p * lc] (any strides) and R (p, j) at
 * r[p * ldr + j] (rows of R contiguous), the same chains as gemm_sgemm; `accumulate`: each chain continues from the
 * value C holds instead of starting at +0 (c = fma(L[i, p], R[p, j], c) for p = 0..K-1), so a product split along K
 * into calls gives the bits of one call. Returns 0, or -1 when memory ran out.
 */
int gemm_strided(int m, int n, int k, const float *l, ptrdiff_t lr, ptrdiff_t lc, const float *r, ptrdiff_t ldr, float *c, ptrdiff_t ldc, bool accumulate, gemm_isa isa, int threads);

/*
 * c[i] = the chain of fused multiply-adds over p = 0..K-1 of rows[i][p] * v[p], for i = 0..M-1 with each row anywhere
 * in memory: the chains gemm_sgemm computes for a matrix-vector product, without gathering the rows first.
 */
void gemm_dot_rows(gemm_isa isa, int m, int k, const float *const *rows, const float *v, float *c);

#endif
