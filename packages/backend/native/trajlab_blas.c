/*
 * trajlab_blas: a Node-API binding of trajlab's native kernels. sgemm, single-precision GEMM (trajlab's row-stable
 * product, stable_gemm.c), is the matrix product of the wasm tensor backend (see ../src/blas.ts): the operands are
 * Float32Array views into the wasm heap, so nothing is copied: C = op(A) op(B) for row-major A, B, C (op = optional
 * transpose), as in cblas_sgemm with alpha 1, beta 0. denseDenoise is the dense optimal denoiser in one pass over the
 * training set (dense_denoiser.c), prunedDenoise its certified pruning (pruned_denoiser.c), both on host arrays;
 * kdeSums the KDE gain metric's exponential sums (kde_sums.c); tuneAllocator the process's malloc settings,
 * reserveHugePageHeap its heap in transparent huge pages (huge_heap.c).
 */
#include <stdint.h> /* first: it defines __GLIBC__ where the C library is glibc */
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <math.h>
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "dense_denoiser.h"
#include "huge_heap.h"
#include "kde_sums.h"
#include "pruned_denoiser.h"
#include "stable_gemm.h"

/* The instruction set and thread count every product of this process uses (setIsa, setThreads). */
static gemm_isa current_isa = GEMM_ISA_SCALAR;
static bool isa_chosen = false;
static int current_threads = 1;

static gemm_isa active_isa(void) {
  if (!isa_chosen) {
    current_isa = gemm_best_isa();
    isa_chosen = true;
  }
  return current_isa;
}

#define CHECK(env, call)                                   \
  do {                                                     \
    if ((call) != napi_ok) {                               \
      napi_throw_error((env), NULL, "trajlab_blas: " #call); \
      return NULL;                                         \
    }                                                      \
  } while (0)

/* A typed-array view of element type `type`: pointer and length in elements; false (with a pending exception naming
   the argument) if the value is not one. */
static bool typed_view(napi_env env, napi_value value, napi_typedarray_type type, const char *name, void **data, size_t *length) {
  bool is_typed = false;
  napi_typedarray_type actual;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &actual, length, data, NULL, NULL) != napi_ok || actual != type) {
    napi_throw_type_error(env, NULL, name);
    return false;
  }
  return true;
}

static bool float32_view(napi_env env, napi_value value, const char *name, float **data, size_t *length) {
  return typed_view(env, value, napi_float32_array, name, (void **)data, length);
}

/* The call's arguments into argv; false (with a pending exception, `usage` if their number is not `count`). */
static bool get_args(napi_env env, napi_callback_info info, size_t count, napi_value *argv, const char *usage) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "trajlab_blas: napi_get_cb_info");
    return false;
  }
  if (argc != count) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

/* sgemm(transA, transB, M, N, K, A, B, C): C[M, N] = op(A)[M, K] op(B)[K, N], all row-major. */
static napi_value sgemm(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!get_args(env, info, 8, argv, "sgemm(transA, transB, M, N, K, A, B, C) takes 8 arguments")) return NULL;
  bool trans_a = false, trans_b = false;
  int32_t m = 0, n = 0, k = 0;
  CHECK(env, napi_get_value_bool(env, argv[0], &trans_a));
  CHECK(env, napi_get_value_bool(env, argv[1], &trans_b));
  CHECK(env, napi_get_value_int32(env, argv[2], &m));
  CHECK(env, napi_get_value_int32(env, argv[3], &n));
  CHECK(env, napi_get_value_int32(env, argv[4], &k));
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!float32_view(env, argv[5], "A must be a Float32Array", &a, &la)) return NULL;
  if (!float32_view(env, argv[6], "B must be a Float32Array", &b, &lb)) return NULL;
  if (!float32_view(env, argv[7], "C must be a Float32Array", &c, &lc)) return NULL;
  if (m < 0 || n < 0 || k < 0 || la < (size_t)m * k || lb < (size_t)k * n || lc < (size_t)m * n) {
    napi_throw_range_error(env, NULL, "sgemm: an operand is smaller than its shape");
    return NULL;
  }
  if (gemm_sgemm(trans_a, trans_b, m, n, k, a, b, c, active_isa(), current_threads) != 0) {
    napi_throw_error(env, NULL, "sgemm: out of memory");
    return NULL;
  }
  return NULL;
}

/*
 * prunedDenoise(points, halfNorm, mean, basis, table, maxProjected, maxResidual, x, t, cutoff, maxKept, out, kept): see
 * pruned_denoiser.h. n = halfNorm.length, dim = mean.length, rank = basis.length / dim, rows b = kept.length.
 */
static napi_value pruned_denoise_binding(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  if (!get_args(env, info, 13, argv, "prunedDenoise(points, halfNorm, mean, basis, table, maxProjected, maxResidual, x, t, cutoff, maxKept, out, kept) takes 13 arguments")) return NULL;
  float *points, *half_norm, *mean, *basis, *table, *x, *out;
  int32_t *kept;
  size_t l_points, l_half, l_mean, l_basis, l_table, l_x, l_out, l_kept;
  if (!float32_view(env, argv[0], "points must be a Float32Array", &points, &l_points)) return NULL;
  if (!float32_view(env, argv[1], "halfNorm must be a Float32Array", &half_norm, &l_half)) return NULL;
  if (!float32_view(env, argv[2], "mean must be a Float32Array", &mean, &l_mean)) return NULL;
  if (!float32_view(env, argv[3], "basis must be a Float32Array", &basis, &l_basis)) return NULL;
  if (!float32_view(env, argv[4], "table must be a Float32Array", &table, &l_table)) return NULL;
  if (!float32_view(env, argv[7], "x must be a Float32Array", &x, &l_x)) return NULL;
  if (!float32_view(env, argv[11], "out must be a Float32Array", &out, &l_out)) return NULL;
  if (!typed_view(env, argv[12], napi_int32_array, "kept must be an Int32Array", (void **)&kept, &l_kept)) return NULL;
  double max_projected = 0, max_residual = 0, t = 0, cutoff = 0;
  int32_t max_kept = 0;
  CHECK(env, napi_get_value_double(env, argv[5], &max_projected));
  CHECK(env, napi_get_value_double(env, argv[6], &max_residual));
  CHECK(env, napi_get_value_double(env, argv[8], &t));
  CHECK(env, napi_get_value_double(env, argv[9], &cutoff));
  CHECK(env, napi_get_value_int32(env, argv[10], &max_kept));
  size_t n = l_half, dim = l_mean, b = l_kept;
  size_t rank = dim ? l_basis / dim : 0;
  if (n == 0 || dim == 0 || rank == 0 || n > INT32_MAX || dim > INT32_MAX || b > INT32_MAX || l_points != n * dim || l_basis != dim * rank ||
      l_table != (rank + 2) * n || l_x < b * dim || l_out < b * dim || !(t > 0) || max_kept < 0) {
    napi_throw_range_error(env, NULL, "prunedDenoise: the arrays do not match n = halfNorm.length, dim = mean.length, rank = basis.length / dim and b = kept.length, or t <= 0");
    return NULL;
  }
  pruned_set set = {(int)n, (int)dim, (int)rank, points, half_norm, mean, basis, table, max_projected, max_residual};
  if (pruned_denoise(&set, (int)b, x, t, cutoff, max_kept, active_isa(), out, kept) != 0) {
    napi_throw_error(env, NULL, "prunedDenoise: out of memory");
    return NULL;
  }
  return NULL;
}

/*
 * denseDenoise(points, halfNorm, x, invT2, out, logits): see dense_denoiser.h. n = halfNorm.length, dim = points.length /
 * n, rows b = x.length / dim; invT2 (1 / t^2) is rounded to float32 as the tensor path rounds it (and must stay finite
 * there); logits ([b, n]) may be null.
 */
static napi_value dense_denoise_binding(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 6, argv, "denseDenoise(points, halfNorm, x, invT2, out, logits) takes 6 arguments")) return NULL;
  float *points, *half_norm, *x, *out, *logits = NULL;
  size_t l_points, l_half, l_x, l_out, l_logits = 0;
  if (!float32_view(env, argv[0], "points must be a Float32Array", &points, &l_points)) return NULL;
  if (!float32_view(env, argv[1], "halfNorm must be a Float32Array", &half_norm, &l_half)) return NULL;
  if (!float32_view(env, argv[2], "x must be a Float32Array", &x, &l_x)) return NULL;
  if (!float32_view(env, argv[4], "out must be a Float32Array", &out, &l_out)) return NULL;
  napi_valuetype logits_type;
  CHECK(env, napi_typeof(env, argv[5], &logits_type));
  if (logits_type != napi_null && logits_type != napi_undefined && !float32_view(env, argv[5], "logits must be a Float32Array or null", &logits, &l_logits)) return NULL;
  double inv_t2 = 0;
  CHECK(env, napi_get_value_double(env, argv[3], &inv_t2));
  size_t n = l_half;
  size_t dim = n ? l_points / n : 0;
  size_t b = dim ? l_x / dim : 0;
  if (n == 0 || dim == 0 || n > INT32_MAX || dim > INT32_MAX || b > INT32_MAX || l_points != n * dim || l_x != b * dim || l_out != b * dim ||
      (logits && l_logits != b * n) || !(inv_t2 > 0) || !isfinite((float)inv_t2)) {
    napi_throw_range_error(env, NULL, "denseDenoise: the arrays do not match n = halfNorm.length, dim = points.length / n, b = x.length / dim (out [b, dim], logits [b, n]), or invT2 is not positive and finite in float32");
    return NULL;
  }
  if (dense_denoise((int)n, (int)dim, points, half_norm, (int)b, x, (float)inv_t2, active_isa(), current_threads, out, logits) != 0) {
    napi_throw_error(env, NULL, "denseDenoise: out of memory");
    return NULL;
  }
  return NULL;
}

/* denseExp(v): e^x in place for every x <= 0 of v, with denseDenoise's exponential (for the tests). */
static napi_value dense_exp_binding(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "denseExp(v) takes 1 argument")) return NULL;
  float *v;
  size_t l_v;
  if (!float32_view(env, argv[0], "v must be a Float32Array", &v, &l_v)) return NULL;
  dense_exp_inplace(active_isa(), v, l_v);
  return NULL;
}

/*
 * kdeSums(a, dy, rowTerm, invT2, out): the KDE gain's exponential sums of one chunk (kde_sums.h). b = rowTerm.length
 * rows of size = a.length / b points; a, dy Float32Array [b, size]; out Float64Array [b, 4] (m0, s0, m1, s1 per row).
 */
static napi_value kde_sums_binding(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, "kdeSums(a, dy, rowTerm, invT2, out) takes 5 arguments")) return NULL;
  float *a, *dy;
  double *row_term, *out;
  size_t l_a, l_dy, l_row, l_out;
  if (!float32_view(env, argv[0], "a must be a Float32Array", &a, &l_a)) return NULL;
  if (!float32_view(env, argv[1], "dy must be a Float32Array", &dy, &l_dy)) return NULL;
  if (!typed_view(env, argv[2], napi_float64_array, "rowTerm must be a Float64Array", (void **)&row_term, &l_row)) return NULL;
  if (!typed_view(env, argv[4], napi_float64_array, "out must be a Float64Array", (void **)&out, &l_out)) return NULL;
  double inv_t2 = 0;
  CHECK(env, napi_get_value_double(env, argv[3], &inv_t2));
  size_t b = l_row;
  size_t size = b ? l_a / b : 0;
  if (b == 0 || size == 0 || b > INT32_MAX || size > INT32_MAX || l_a != b * size || l_dy != l_a || l_out != 4 * b) {
    napi_throw_range_error(env, NULL, "kdeSums: the arrays do not match b = rowTerm.length rows of size = a.length / b points (dy as a, out [b, 4])");
    return NULL;
  }
  kde_sums(active_isa(), (int)b, (int)size, a, dy, row_term, inv_t2, out);
  return NULL;
}

/* setThreads(n): the number of threads each product uses from now on (the bits do not depend on it). */
static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t threads = 1;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_int32(env, argv[0], &threads) != napi_ok || threads < 1 || threads > 256) {
    napi_throw_range_error(env, NULL, "setThreads(n) needs an integer n from 1 to 256");
    return NULL;
  }
  current_threads = threads;
  return NULL;
}

static napi_value get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(env, napi_create_int32(env, current_threads, &result));
  return result;
}

/* setIsa(name): "avx512", "avx2" or "scalar", at most the CPU's best; returns the name in use. */
static napi_value set_isa(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[16] = {0};
  size_t length = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "setIsa(name) needs a string");
    return NULL;
  }
  int wanted = -1;
  for (int isa = GEMM_ISA_SCALAR; isa <= GEMM_ISA_AVX512; isa++)
    if (strcmp(name, gemm_isa_name((gemm_isa)isa)) == 0) wanted = isa;
  if (wanted < 0) {
    napi_throw_range_error(env, NULL, "setIsa(name): name must be avx512, avx2 or scalar");
    return NULL;
  }
  if (wanted > (int)gemm_best_isa()) {
    napi_throw_range_error(env, NULL, "setIsa(name): this CPU does not support that instruction set");
    return NULL;
  }
  current_isa = (gemm_isa)wanted;
  isa_chosen = true;
  napi_value result;
  CHECK(env, napi_create_string_utf8(env, gemm_isa_name(current_isa), NAPI_AUTO_LENGTH, &result));
  return result;
}

/* isa(): the instruction set in use; bestIsa(): the fastest one this CPU supports. */
static napi_value get_isa(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(env, napi_create_string_utf8(env, gemm_isa_name(active_isa()), NAPI_AUTO_LENGTH, &result));
  return result;
}

static napi_value get_best_isa(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(env, napi_create_string_utf8(env, gemm_isa_name(gemm_best_isa()), NAPI_AUTO_LENGTH, &result));
  return result;
}

/*
 * tuneAllocator(mmapThreshold, trimThreshold, topPad): glibc's malloc settings for a process that computes (see
 * ../src/allocator.ts): allocations below mmapThreshold bytes come from the heap instead of fresh mappings, freed heap
 * memory is kept up to trimThreshold bytes, and the heap grows topPad bytes beyond each need, so that the buffers a
 * shard allocates and frees at every time point reuse pages already mapped instead of faulting fresh ones in. Returns
 * whether they were applied (false with another C library).
 */
static napi_value tune_allocator(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 3) {
    napi_throw_type_error(env, NULL, "tuneAllocator(mmapThreshold, trimThreshold, topPad)");
    return NULL;
  }
  int64_t bytes[3];
  for (int i = 0; i < 3; i++) {
    CHECK(env, napi_get_value_int64(env, argv[i], &bytes[i]));
    if (bytes[i] < 0 || bytes[i] > INT32_MAX) {
      napi_throw_range_error(env, NULL, "tuneAllocator: each size must be from 0 to 2^31 - 1 bytes");
      return NULL;
    }
  }
  bool applied = false;
#if defined(__GLIBC__)
  applied = mallopt(M_MMAP_THRESHOLD, (int)bytes[0]) == 1;
  applied = mallopt(M_TRIM_THRESHOLD, (int)bytes[1]) == 1 && applied;
  applied = mallopt(M_TOP_PAD, (int)bytes[2]) == 1 && applied;
#endif
  napi_value result;
  CHECK(env, napi_get_boolean(env, applied, &result));
  return result;
}

/*
 * reserveHugePageHeap(bytes): grows the heap by `bytes` without touching it and advises transparent huge pages over it
 * (huge_heap.c). Returns the bytes advised (0 where nothing could be, -1 where the kernel refused the advice).
 */
static napi_value reserve_huge_page_heap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t bytes = -1;
  if (argc != 1 || napi_get_value_int64(env, argv[0], &bytes) != napi_ok || bytes < 0 || bytes > ((int64_t)1 << 40)) {
    napi_throw_range_error(env, NULL, "reserveHugePageHeap(bytes): bytes must be from 0 to 2^40");
    return NULL;
  }
  napi_value result;
  CHECK(env, napi_create_double(env, (double)huge_heap_reserve((size_t)bytes), &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sgemm", NULL, sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"denseDenoise", NULL, dense_denoise_binding, NULL, NULL, NULL, napi_enumerable, NULL},
      {"denseExp", NULL, dense_exp_binding, NULL, NULL, NULL, napi_enumerable, NULL},
      {"prunedDenoise", NULL, pruned_denoise_binding, NULL, NULL, NULL, napi_enumerable, NULL},
      {"kdeSums", NULL, kde_sums_binding, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"threads", NULL, get_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setIsa", NULL, set_isa, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isa", NULL, get_isa, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bestIsa", NULL, get_best_isa, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tuneAllocator", NULL, tune_allocator, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reserveHugePageHeap", NULL, reserve_huge_page_heap, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(env, napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  return exports;
}

NAPI_MODULE(trajlab_blas, init)
