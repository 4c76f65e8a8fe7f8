// CUDA matmul family: sgemm through cuBLAS (fp32, no TF32), bias add and bias gradient.
//
// Contract (kernels/matmul.h): row-major C[M,N] = alpha op(A) op(B) + beta C. cuBLAS is
// column-major, so we compute C^T = op(B)^T op(A)^T: a row-major X with leading dimension ld
// is the column-major X^T with the same ld, hence the call swaps A/B and M/N and keeps the
// transpose flags. K == 0 gives C = beta C (C = 0 when beta == 0, as BLAS). The handle's
// math mode (set by the backend) is CUBLAS_DEFAULT_MATH: plain fp32, parity with the CPU.
// add_bias: y[N,C] += b[C]. bias_backward: db[C] += colsum(dy) (deterministic, colsum.cuh);
// bias_backward_bf16 the same over a bf16 dy, summed in fp32. The bf16 GEMM: matmul_lt.cu.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/colsum.cuh"
#include "kernels/matmul.h"

#include <climits>

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

__global__ void scale_matrix_kernel(float* C, int64_t M, int64_t N, int64_t ldc, float beta) {
  const int64_t total = M * N;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t r = i / N, c = i % N;
    float* p = C + r * ldc + c;
    *p = beta == 0.f ? 0.f : beta * *p;
  }
}

__global__ void add_bias_kernel(float* y, const float* __restrict__ b, int64_t N, int64_t C) {
  const int64_t total = N * C;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] += b[i % C];
}

// Rows of C/4 float4 (C % 4 == 0, 16-byte aligned pointers).
__global__ void add_bias_vec4_kernel(float4* y, const float4* __restrict__ b, int64_t N,
                                     int64_t C4) {
  const int64_t total = N * C4;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float4 v = y[i];
    const float4 w = b[i % C4];
    v.x += w.x; v.y += w.y; v.z += w.z; v.w += w.w;
    y[i] = v;
  }
}

template <class T>
struct DyColumn {
  const T* dy;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t c, float* acc) const {
    acc[0] += load_f32(dy + r * C + c);
  }
};

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

void sgemm(CudaContext& ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  TANDEM_CHECK(M >= 0 && N >= 0 && K >= 0, "sgemm sizes M={} N={} K={}", M, N, K);
  if (M == 0 || N == 0) return;
  TANDEM_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
                   ldc <= INT_MAX,
               "sgemm dimension beyond cuBLAS int range: M={} N={} K={} lda={} ldb={} ldc={}", M,
               N, K, lda, ldb, ldc);
  TANDEM_CHECK(ldc >= N && lda >= (transA ? M : K) && ldb >= (transB ? K : N),
               "sgemm leading dimensions lda={} ldb={} ldc={} for M={} N={} K={} transA={} "
               "transB={}",
               lda, ldb, ldc, M, N, K, transA, transB);
  if (K == 0) {
    if (beta == 1.f) return;
    scale_matrix_kernel<<<grid_for(ctx, M * N, 256), 256, 0, ctx.stream>>>(C, M, N, ldc, beta);
    TANDEM_LAUNCH_CHECK("scale_matrix_kernel");
    return;
  }
  const cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Column-major: C^T[N,M] = op(B)^T[N,K] op(A)^T[K,M].
  cublasStatus_t s = cublasSgemm(ctx.cublas, opB, opA, static_cast<int>(N), static_cast<int>(M),
                                 static_cast<int>(K), &alpha, B, static_cast<int>(ldb), A,
                                 static_cast<int>(lda), &beta, C, static_cast<int>(ldc));
  TANDEM_CHECK(s == CUBLAS_STATUS_SUCCESS,
               "cublasSgemm status {} (M={} N={} K={} transA={} transB={} lda={} ldb={} ldc={})",
               static_cast<int>(s), M, N, K, transA, transB, lda, ldb, ldc);
}

void add_bias(CudaContext& ctx, float* y, const float* b, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  if (C % 4 == 0 && aligned16(y) && aligned16(b)) {
    const int64_t C4 = C / 4;
    add_bias_vec4_kernel<<<grid_for(ctx, N * C4, 256), 256, 0, ctx.stream>>>(
        reinterpret_cast<float4*>(y), reinterpret_cast<const float4*>(b), N, C4);
    TANDEM_LAUNCH_CHECK("add_bias_vec4_kernel");
  } else {
    add_bias_kernel<<<grid_for(ctx, N * C, 256), 256, 0, ctx.stream>>>(y, b, N, C);
    TANDEM_LAUNCH_CHECK("add_bias_kernel");
  }
}

void bias_backward(CudaContext& ctx, float* db, const float* dy, int64_t N, int64_t C) {
  ColDst<1> dst{{db}};
  col_accumulate<1>(ctx, N, C, DyColumn<float>{dy, C}, dst);
}

void bias_backward_bf16(CudaContext& ctx, float* db, const bf16* dy, int64_t N, int64_t C) {
  ColDst<1> dst{{db}};
  col_accumulate<1>(ctx, N, C, DyColumn<__nv_bfloat16>{dev(dy), C}, dst);
}

}  // namespace tandem::kernels::cuda
