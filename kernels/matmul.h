// Kernel family: matrix multiply and the linear layer built on it (row-major, fp32).
//
// Contract:
//   matmul:          C[M,N] = alpha * op(A) @ op(B) + beta * C, op(A) is [M,K], op(B) is [K,N].
//   linear_forward:  y[N,out] = x[N,in] @ W[out,in]^T (+ b[out])    (PyTorch weight layout)
//   linear_backward: dW += dy^T @ x;  db += colsum(dy);  dx = dy @ W  (or += when accumulate_dx)
//   add_bias:        y[N,C] += b[C];   bias_backward: db[C] += colsum(dy[N,C])
// CPU: OpenBLAS sgemm, except linear_forward with at most kSkinnyRows rows (decode), which
// runs cpu::linear_forward_skinny. CUDA: cuBLAS(Lt).
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void matmul(Backend& be, Tensor& C, const Tensor& A, bool transA, const Tensor& B, bool transB,
            float alpha = 1.0f, float beta = 0.0f);
void linear_forward(Backend& be, Tensor& y, const Tensor& x, const Tensor& W, const Tensor* b);
void linear_backward(Backend& be, Tensor* dx, Tensor& dW, Tensor* db, const Tensor& dy,
                     const Tensor& x, const Tensor& W, bool accumulate_dx = false);
void add_bias(Backend& be, Tensor& y, const Tensor& b);
void bias_backward(Backend& be, Tensor& db, const Tensor& dy);

namespace cpu {
// linear_forward on the CPU backend takes the skinny kernel up to this many rows.
constexpr int64_t kSkinnyRows = 16;
// Row-major GEMM: C = alpha*op(A)*op(B) + beta*C with leading dimensions as in cblas.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void add_bias(float* y, const float* b, int64_t N, int64_t C);
void bias_backward(float* db, const float* dy, int64_t N, int64_t C);
// Few-row linear layer (decode): y[M,out] = x[M,in] @ W[out,in]^T (+ b[out]; b may be null),
// all row-major and dense (leading dims in, in, out). Meant for M <= kSkinnyRows (any M is
// correct; beyond that sgemm is faster). Streams W once at close to memory bandwidth; fp32
// with a fixed summation order (differs from sgemm's: compare with a tolerance). y must not
// alias x, W or b. Callable inside OpenMP regions (it does not use BLAS).
void linear_forward_skinny(float* y, const float* x, const float* W, const float* b, int64_t M,
                           int64_t in, int64_t out);
}  // namespace cpu

namespace cuda {
void sgemm(CudaContext& ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);
void add_bias(CudaContext& ctx, float* y, const float* b, int64_t N, int64_t C);
void bias_backward(CudaContext& ctx, float* db, const float* dy, int64_t N, int64_t C);
}  // namespace cuda

}  // namespace tandem::kernels
