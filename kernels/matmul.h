// Kernel family: matrix multiply and the linear layer built on it (row-major, fp32).
//
// Contract:
//   matmul:          C[M,N] = alpha * op(A) @ op(B) + beta * C, op(A) is [M,K], op(B) is [K,N].
//   linear_forward:  y[N,out] = x[N,in] @ W[out,in]^T (+ b[out])    (PyTorch weight layout)
//   linear_backward: dW += dy^T @ x;  db += colsum(dy);  dx = dy @ W  (or += when accumulate_dx)
//   add_bias:        y[N,C] += b[C];   bias_backward: db[C] += colsum(dy[N,C])
// CPU: OpenBLAS sgemm. CUDA: cuBLAS(Lt).
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
// Row-major GEMM: C = alpha*op(A)*op(B) + beta*C with leading dimensions as in cblas.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void add_bias(float* y, const float* b, int64_t N, int64_t C);
void bias_backward(float* db, const float* dy, int64_t N, int64_t C);
}  // namespace cpu

namespace cuda {
void sgemm(CudaContext& ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);
void add_bias(CudaContext& ctx, float* y, const float* b, int64_t N, int64_t C);
void bias_backward(CudaContext& ctx, float* db, const float* dy, int64_t N, int64_t C);
}  // namespace cuda

}  // namespace tandem::kernels
