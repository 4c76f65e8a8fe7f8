// Tensor-level matmul/linear: shape checks, then the CPU or CUDA implementation; a BF16
// weight (or BF16 operands) takes the mixed-precision path through gemm_bf16
// (kernels/matmul_bf16.cpp).
#include "kernels/matmul.h"

#include "kernels/cast.h"
#include "kernels/dispatch.h"

namespace tandem::kernels {

namespace {

void gemm(Backend& be, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
          int64_t ldc) {
  if (on_cpu(be)) {
    cpu::sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    TANDEM_CUDA_DISPATCH(be, cuda::sgemm(TANDEM_CUDA_CTX(be), ta, tb, M, N, K, alpha, A, lda, B,
                                         ldb, beta, C, ldc));
  }
}

bool is_bf16(const Tensor& t) { return t.dtype() == DType::BF16; }

void linear_forward_bf16(Backend& be, Tensor& y, const Tensor& x, const Tensor& W, const Tensor* b) {
  const Tensor x16 = to_bf16(be, x);
  gemm_bf16(be, y, x16, false, W, true, b ? Epilogue::Bias : Epilogue::None, b);
}

void linear_backward_bf16(Backend& be, Tensor* dx, Tensor& dW, Tensor* db, const Tensor& dy,
                          const Tensor& x, const Tensor& W, bool accumulate_dx) {
  const Tensor dy16 = to_bf16(be, dy), x16 = to_bf16(be, x);
  gemm_bf16(be, dW, dy16, true, x16, false, Epilogue::None, nullptr, nullptr, 1.0f, 1.0f);
  if (db) bias_backward(be, *db, dy);  // from dy as given: fp32 stays fp32
  if (dx) {
    check_shape(*dx, x.shape(), "linear_backward dx");
    gemm_bf16(be, *dx, dy16, false, W, false, Epilogue::None, nullptr, nullptr, 1.0f,
              accumulate_dx ? 1.0f : 0.0f);
  }
}

}  // namespace

void matmul(Backend& be, Tensor& C, const Tensor& A, bool transA, const Tensor& B, bool transB,
            float alpha, float beta) {
  check_device(be, A, "matmul A");
  check_device(be, B, "matmul B");
  check_device(be, C, "matmul C");
  TANDEM_CHECK(A.ndim() == 2 && B.ndim() == 2 && C.ndim() == 2, "matmul needs 2-d tensors: {} {} {}",
               A.describe(), B.describe(), C.describe());
  int64_t M = transA ? A.dim(1) : A.dim(0);
  int64_t K = transA ? A.dim(0) : A.dim(1);
  int64_t Kb = transB ? B.dim(1) : B.dim(0);
  int64_t N = transB ? B.dim(0) : B.dim(1);
  TANDEM_CHECK(K == Kb && C.dim(0) == M && C.dim(1) == N,
               "matmul shapes: op(A)=[{},{}] op(B)=[{},{}] C={}", M, K, Kb, N, shape_str(C.shape()));
  if (is_bf16(A) || is_bf16(B)) {
    TANDEM_CHECK(is_bf16(A) && is_bf16(B), "matmul: operands {} and {} mix bf16 and another dtype",
                 A.describe(), B.describe());
    gemm_bf16(be, C, A, transA, B, transB, Epilogue::None, nullptr, nullptr, alpha, beta);
    return;
  }
  gemm(be, transA, transB, M, N, K, alpha, A.f32(), A.dim(1), B.f32(), B.dim(1), beta, C.f32(),
       C.dim(1));
}

void linear_forward(Backend& be, Tensor& y, const Tensor& x, const Tensor& W, const Tensor* b) {
  check_device(be, x, "linear x");
  check_device(be, W, "linear W");
  check_device(be, y, "linear y");
  TANDEM_CHECK(x.ndim() == 2 && W.ndim() == 2, "linear: x {} W {}", x.describe(), W.describe());
  int64_t N = x.dim(0), in = x.dim(1), out = W.dim(0);
  TANDEM_CHECK(W.dim(1) == in, "linear: x {} does not match W {}", shape_str(x.shape()),
               shape_str(W.shape()));
  check_shape(y, {N, out}, "linear y");
  if (is_bf16(W)) {
    linear_forward_bf16(be, y, x, W, b);
    return;
  }
  if (on_cpu(be) && N <= cpu::kSkinnyRows) {  // decode: stream W once (kernels/matmul.h)
    if (b) {
      check_device(be, *b, "linear b");
      check_shape(*b, {out}, "linear b");
    }
    cpu::linear_forward_skinny(y.f32(), x.f32(), W.f32(), b ? b->f32() : nullptr, N, in, out);
    return;
  }
  gemm(be, false, true, N, out, in, 1.0f, x.f32(), in, W.f32(), in, 0.0f, y.f32(), out);
  if (b) add_bias(be, y, *b);
}

void linear_backward(Backend& be, Tensor* dx, Tensor& dW, Tensor* db, const Tensor& dy,
                     const Tensor& x, const Tensor& W, bool accumulate_dx) {
  int64_t N = x.dim(0), in = x.dim(1), out = W.dim(0);
  check_shape(dy, {N, out}, "linear_backward dy");
  check_shape(dW, {out, in}, "linear_backward dW");
  check_device(be, dy, "linear_backward dy");
  check_device(be, dW, "linear_backward dW");
  if (is_bf16(W)) {
    linear_backward_bf16(be, dx, dW, db, dy, x, W, accumulate_dx);
    return;
  }
  // dW[out,in] += dy^T[out,N] @ x[N,in]
  gemm(be, true, false, out, in, N, 1.0f, dy.f32(), out, x.f32(), in, 1.0f, dW.f32(), in);
  if (db) bias_backward(be, *db, dy);
  if (dx) {
    check_shape(*dx, {N, in}, "linear_backward dx");
    // dx[N,in] = dy[N,out] @ W[out,in]
    gemm(be, false, false, N, in, out, 1.0f, dy.f32(), out, W.f32(), in, accumulate_dx ? 1.0f : 0.0f,
         dx->f32(), in);
  }
}

void add_bias(Backend& be, Tensor& y, const Tensor& b) {
  check_device(be, y, "add_bias y");
  check_device(be, b, "add_bias b");
  int64_t C = y.dim(-1), N = y.numel() / C;
  check_shape(b, {C}, "add_bias b");
  if (on_cpu(be)) cpu::add_bias(y.f32(), b.f32(), N, C);
  else TANDEM_CUDA_DISPATCH(be, cuda::add_bias(TANDEM_CUDA_CTX(be), y.f32(), b.f32(), N, C));
}

void bias_backward(Backend& be, Tensor& db, const Tensor& dy) {
  check_device(be, db, "bias_backward db");
  check_device(be, dy, "bias_backward dy");
  int64_t C = dy.dim(-1), N = dy.numel() / C;
  check_shape(db, {C}, "bias_backward db");
  if (is_bf16(dy)) {
    const bf16* g = dy.data<bf16>();
    if (on_cpu(be)) cpu::bias_backward_bf16(db.f32(), g, N, C);
    else TANDEM_CUDA_DISPATCH(be, cuda::bias_backward_bf16(TANDEM_CUDA_CTX(be), db.f32(), g, N, C));
    return;
  }
  if (on_cpu(be)) cpu::bias_backward(db.f32(), dy.f32(), N, C);
  else TANDEM_CUDA_DISPATCH(be, cuda::bias_backward(TANDEM_CUDA_CTX(be), db.f32(), dy.f32(), N, C));
}

}  // namespace tandem::kernels
