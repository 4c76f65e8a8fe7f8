// Kernel family: matrix multiply and the linear layer built on it (row-major).
//
// Contract:
//   matmul:          C[M,N] = alpha * op(A) @ op(B) + beta * C, op(A) is [M,K], op(B) is [K,N].
//   linear_forward:  y[N,out] = x[N,in] @ W[out,in]^T (+ b[out])    (PyTorch weight layout)
//   linear_backward: dW += dy^T @ x;  db += colsum(dy);  dx = dy @ W  (or += when accumulate_dx)
//   add_bias:        y[N,C] += b[C];   bias_backward: db[C] += colsum(dy[N,C])
// fp32 (every tensor F32): CPU: OpenBLAS sgemm, except linear_forward with at most kSkinnyRows
// rows (decode), which runs cpu::linear_forward_skinny. CUDA: cuBLAS sgemm (no TF32).
//
// Mixed precision (train.precision: bf16; docs/architecture.md): a BF16 weight W (or BF16 A
// and B in matmul) selects gemm_bf16: bf16 operands, products accumulated in fp32 (cuBLASLt,
// CUBLAS_COMPUTE_32F), output F32 or BF16 as the output tensor says. linear_* round F32
// activation operands (x, dy) to bf16 first; dW and db stay F32 and accumulate (+=) in fp32;
// db sums the dy it was given (F32 or BF16). A bias must have the dtype of the output it is
// added to (cuBLASLt's rule for fused bias epilogues).
//   gemm_bf16:   D[M,N] = epi(alpha op(A) op(B) + beta D), A and B BF16; D F32 or BF16.
//     None         D = alpha AB + beta D       (beta != 0 only with D F32)
//     Bias         D = AB + bias[n]
//     GeluAuxBias  aux = AB + bias[n];  D = gelu(aux)   (aux: the GELU input, saved for backward)
//     DGelu        D = AB * gelu'(aux)                   (aux: that GELU input)
//     aux is [M,N] with D's dtype. CUDA runs one cuBLASLt call with the fused epilogue when
//     cuBLASLt has an algorithm for it, and otherwise (and the CPU always, the reference) the
//     unfused sequence: fp32 GEMM of the bf16 operands, then bias/GELU in fp32 with this
//     library's kernels, then one rounding to the output dtype (aux rounded from the fp32 GELU
//     input, D = gelu of the unrounded input).
//   linear_gelu_forward:  pre = x W^T + b; out = gelu(pre)  (out, pre: F32 with an F32 W, then
//                         exactly linear_forward + gelu_forward; BF16 with a BF16 W and b:
//                         GeluAuxBias)
//   linear_backward_dgelu: the backward of a linear layer whose input was act = gelu(pre):
//                         dW += dy^T act; db += colsum(dy); dpre = (dy W) * gelu'(pre)
//                         (F32: exactly linear_backward + gelu_backward; BF16: DGelu)
// Outputs must not overlap inputs (dpre may not alias dy in the BF16 path).
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

enum class Epilogue : uint8_t { None, Bias, GeluAuxBias, DGelu };
const char* epilogue_name(Epilogue e);
void gemm_bf16(Backend& be, Tensor& D, const Tensor& A, bool transA, const Tensor& B, bool transB,
               Epilogue epi = Epilogue::None, const Tensor* bias = nullptr, Tensor* aux = nullptr,
               float alpha = 1.0f, float beta = 0.0f);
void linear_gelu_forward(Backend& be, Tensor& out, Tensor& pre, const Tensor& x, const Tensor& W,
                         const Tensor& b);
void linear_backward_dgelu(Backend& be, Tensor& dpre, Tensor& dW, Tensor& db, const Tensor& dy,
                           const Tensor& act, const Tensor& W, const Tensor& pre);

namespace cpu {
// linear_forward on the CPU backend takes the skinny kernel up to this many rows.
constexpr int64_t kSkinnyRows = 16;
// Row-major GEMM: C = alpha*op(A)*op(B) + beta*C with leading dimensions as in cblas.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void add_bias(float* y, const float* b, int64_t N, int64_t C);
void bias_backward(float* db, const float* dy, int64_t N, int64_t C);
void bias_backward_bf16(float* db, const bf16* dy, int64_t N, int64_t C);
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
void bias_backward_bf16(CudaContext& ctx, float* db, const bf16* dy, int64_t N, int64_t C);

// One cuBLASLt matmul with bf16 A and B, fp32 accumulation and scale (CUBLAS_COMPUTE_32F), in
// the row-major terms of cpu::sgemm: D[M,N] = epi(alpha op(A) op(B) + beta D), D fp32 or bf16
// (d_bf16), leading dimensions in elements; bias has D's type, aux is [M,N] with leading
// dimension ldaux and D's type. Returns false, having launched nothing, when cuBLASLt offers no
// algorithm for this epilogue, types, shape and alignment (the caller then runs the unfused
// path); a plain GEMM it offers none for runs through cublasGemmEx (same types, fp32
// accumulation) and returns true; throws on any other cuBLAS error.
struct LtGemm {
  bool transA = false, transB = false;
  int64_t M = 0, N = 0, K = 0;
  const bf16* A = nullptr;
  int64_t lda = 0;
  const bf16* B = nullptr;
  int64_t ldb = 0;
  void* D = nullptr;
  int64_t ldd = 0;
  bool d_bf16 = false;
  float alpha = 1.0f, beta = 0.0f;
  Epilogue epi = Epilogue::None;
  const void* bias = nullptr;
  void* aux = nullptr;
  int64_t ldaux = 0;
};
bool gemm_bf16_lt(CudaContext& ctx, const LtGemm& g);
// The LtGemm of gemm_bf16(D, A, transA, B, transB, ...) on dense 2-d tensors (leading dimensions
// are the widths). Plain host code, in every build.
LtGemm lt_gemm_of(Tensor& D, const Tensor& A, bool transA, const Tensor& B, bool transB,
                  Epilogue epi = Epilogue::None, const Tensor* bias = nullptr, Tensor* aux = nullptr,
                  float alpha = 1.0f, float beta = 0.0f);
}  // namespace cuda

}  // namespace tandem::kernels
