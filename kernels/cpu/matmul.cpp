// CPU reference for kernels/matmul.h: row-major fp32 GEMM through OpenBLAS, bias add and
// bias gradient with OpenMP.
//
// Contract: sgemm computes C = alpha*op(A)*op(B) + beta*C exactly as cblas_sgemm(RowMajor)
// would (sizes must fit OpenBLAS's integer type; empty products only scale C by beta).
// It must not be called from inside an OpenMP parallel region: the pthread OpenBLAS keeps
// its own thread pool, and nesting it under OpenMP oversubscribes the cores.
// add_bias: y[n, c] += b[c].  bias_backward: db[c] += sum_n dy[n, c], summed in a fixed
// order for a given thread count (per-thread partial sums, reduced in thread order).
// bias_backward_bf16: the same sums over dy widened to fp32 (exact), in the same order.
#include "kernels/matmul.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "kernels/cast.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  TANDEM_CHECK(M >= 0 && N >= 0 && K >= 0, "sgemm sizes M {} N {} K {}", M, N, K);
  TANDEM_CHECK(!omp_in_parallel(),
               "sgemm (OpenBLAS) called inside an OpenMP parallel region (M {} N {} K {})", M, N,
               K);
  if (M == 0 || N == 0) return;
  // Leading dimensions as cblas requires them for row-major storage.
  const int64_t min_lda = std::max<int64_t>(1, transA ? M : K);
  const int64_t min_ldb = std::max<int64_t>(1, transB ? K : N);
  TANDEM_CHECK(lda >= min_lda && ldb >= min_ldb && ldc >= std::max<int64_t>(1, N),
               "sgemm leading dims lda {} (>= {}) ldb {} (>= {}) ldc {} (>= {})", lda, min_lda, ldb,
               min_ldb, ldc, N);
  if (K == 0) {  // op(A)op(B) is zero: C = beta*C (beta 0 clears, even NaN)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  constexpr int64_t kMax = std::numeric_limits<blasint>::max();
  TANDEM_CHECK(M <= kMax && N <= kMax && K <= kMax && lda <= kMax && ldb <= kMax && ldc <= kMax,
               "sgemm sizes exceed the BLAS integer range: M {} N {} K {} lda {} ldb {} ldc {}", M,
               N, K, lda, ldb, ldc);
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
              static_cast<blasint>(ldc));
}

void add_bias(float* y, const float* b, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    float* row = y + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) row[c] += b[c];
  }
}

void bias_backward(float* db, const float* dy, int64_t N, int64_t C) {
  if (N == 0 || C == 0) return;
  const int nt = (N * C >= (1 << 15)) ? omp_get_max_threads() : 1;
  if (nt == 1) {
    for (int64_t n = 0; n < N; ++n) {
      const float* row = dy + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) db[c] += row[c];
    }
    return;
  }
  // Per-thread partial column sums over a static row split, then a reduction in thread order.
  std::vector<float> partial(static_cast<size_t>(nt) * C, 0.0f);
#pragma omp parallel num_threads(nt)
  {
    float* mine = partial.data() + static_cast<size_t>(omp_get_thread_num()) * C;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* row = dy + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) mine[c] += row[c];
    }
  }
  for (int t = 0; t < nt; ++t) {
    const float* p = partial.data() + static_cast<size_t>(t) * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) db[c] += p[c];
  }
}

void bias_backward_bf16(float* db, const bf16* dy, int64_t N, int64_t C) {
  std::vector<float> wide(static_cast<size_t>(N * C));
  bf16_to_f32(wide.data(), dy, N * C);
  bias_backward(db, wide.data(), N, C);
}

}  // namespace tandem::kernels::cpu
