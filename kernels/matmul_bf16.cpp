// Tensor-level mixed-precision GEMM (kernels/matmul.h, "Mixed precision"): shape and dtype
// checks, then on CUDA one cuBLASLt call with the fused epilogue when cuBLASLt has an algorithm
// for it, else (and on the CPU, where this is the reference) the unfused sequence:
//   acc (fp32) = alpha op(A) op(B) + beta D     CPU: bf16 -> fp32 (exact) + OpenBLAS sgemm;
//                                               CUDA: cuBLASLt with an fp32 output
//   Bias:        acc += bias                    (add_bias, fp32)
//   GeluAuxBias: acc += bias; aux = round(acc); acc = gelu(acc)
//   DGelu:       acc *= gelu'(aux)              (gelu_backward, fp32)
//   D = round(acc) when D is bf16
// so the CPU reference and a CUDA fallback compute the same function as the fused epilogue up to
// summation order, tanh's rounding and where a value is rounded to bf16.
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>

#include "kernels/cast.h"
#include "kernels/dispatch.h"
#include "kernels/gelu.h"
#include "kernels/matmul.h"

namespace tandem::kernels {

namespace {

bool is_bf16(const Tensor& t) { return t.dtype() == DType::BF16; }

// The fp32 product of bf16 operands into acc (F32, [M, N]): acc = alpha op(A) op(B) + beta acc.
void gemm_f32_out(Backend& be, Tensor& acc, const Tensor& A, bool ta, const Tensor& B, bool tb,
                  float alpha, float beta) {
  const int64_t M = acc.dim(0), N = acc.dim(1), K = ta ? A.dim(0) : A.dim(1);
  if (on_cpu(be)) {
    const Tensor A32 = to_f32(be, A), B32 = to_f32(be, B);  // exact: bf16 is a subset of fp32
    cpu::sgemm(ta, tb, M, N, K, alpha, A32.f32(), A.dim(1), B32.f32(), B.dim(1), beta, acc.f32(),
               N);
    return;
  }
#ifdef TANDEM_HAVE_CUDA
  const cuda::LtGemm g =
      cuda::lt_gemm_of(acc, A, ta, B, tb, Epilogue::None, nullptr, nullptr, alpha, beta);
  TANDEM_CHECK(cuda::gemm_bf16_lt(TANDEM_CUDA_CTX(be), g),
               "cuBLASLt has no bf16 GEMM algorithm for M={} N={} K={} transA={} transB={} "
               "(A {}, B {}, fp32 output)",
               M, N, K, ta, tb, A.describe(), B.describe());
#else
  no_cuda(__func__);
#endif
}

// The CUDA fused path; false when cuBLASLt has no algorithm (nothing was launched).
bool try_fused(Backend& be, Tensor& D, const Tensor& A, bool ta, const Tensor& B, bool tb,
               Epilogue epi, const Tensor* bias, Tensor* aux, float alpha, float beta) {
#ifdef TANDEM_HAVE_CUDA
  return cuda::gemm_bf16_lt(TANDEM_CUDA_CTX(be),
                           cuda::lt_gemm_of(D, A, ta, B, tb, epi, bias, aux, alpha, beta));
#else
  no_cuda(__func__);
#endif
}

void gemm_unfused(Backend& be, Tensor& D, const Tensor& A, bool ta, const Tensor& B, bool tb,
                  Epilogue epi, const Tensor* bias, Tensor* aux, float alpha, float beta) {
  Tensor acc = is_bf16(D) ? be.empty(D.shape()) : D;
  gemm_f32_out(be, acc, A, ta, B, tb, alpha, beta);
  switch (epi) {
    case Epilogue::None: break;
    case Epilogue::Bias: add_bias(be, acc, to_f32(be, *bias)); break;
    case Epilogue::GeluAuxBias:
      add_bias(be, acc, to_f32(be, *bias));
      cast(be, *aux, acc);
      gelu_forward(be, acc, acc);
      break;
    case Epilogue::DGelu: gelu_backward(be, acc, to_f32(be, *aux), acc); break;
  }
  if (is_bf16(D)) cast(be, D, acc);
}

// Once per process and epilogue: say that the fused epilogue is unavailable (the numbers are the
// same either way; only the speed differs).
void note_unfused(Epilogue epi, const Tensor& D, int64_t K) {
  static std::array<std::atomic<bool>, 4> said{};
  if (!said[static_cast<int>(epi)].exchange(true))
    spdlog::warn("cuBLASLt offers no fused {} epilogue for output {} (K={}); running it unfused "
                 "(same result, slower)", epilogue_name(epi), D.describe(), K);
}

}  // namespace

cuda::LtGemm cuda::lt_gemm_of(Tensor& D, const Tensor& A, bool ta, const Tensor& B, bool tb,
                              Epilogue epi, const Tensor* bias, Tensor* aux, float alpha,
                              float beta) {
  LtGemm g;
  g.transA = ta;
  g.transB = tb;
  g.M = D.dim(0);
  g.N = D.dim(1);
  g.K = ta ? A.dim(0) : A.dim(1);
  g.A = A.data<bf16>();
  g.lda = A.dim(1);
  g.B = B.data<bf16>();
  g.ldb = B.dim(1);
  g.D = D.raw();
  g.ldd = D.dim(1);
  g.d_bf16 = is_bf16(D);
  g.alpha = alpha;
  g.beta = beta;
  g.epi = epi;
  g.bias = bias ? bias->raw() : nullptr;
  g.aux = aux ? aux->raw() : nullptr;
  g.ldaux = aux ? aux->dim(1) : 0;
  return g;
}

const char* epilogue_name(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "none";
    case Epilogue::Bias: return "bias";
    case Epilogue::GeluAuxBias: return "gelu_aux_bias";
    case Epilogue::DGelu: return "dgelu";
  }
  return "?";
}

void gemm_bf16(Backend& be, Tensor& D, const Tensor& A, bool ta, const Tensor& B, bool tb,
               Epilogue epi, const Tensor* bias, Tensor* aux, float alpha, float beta) {
  check_device(be, A, "gemm_bf16 A");
  check_device(be, B, "gemm_bf16 B");
  check_device(be, D, "gemm_bf16 D");
  TANDEM_CHECK(A.ndim() == 2 && B.ndim() == 2 && D.ndim() == 2, "gemm_bf16 needs 2-d tensors: {} {} {}",
               A.describe(), B.describe(), D.describe());
  TANDEM_CHECK(is_bf16(A) && is_bf16(B), "gemm_bf16 operands must be bf16: A {} B {}", A.describe(),
               B.describe());
  TANDEM_CHECK(D.dtype() == DType::F32 || is_bf16(D), "gemm_bf16 output {} must be f32 or bf16",
               D.describe());
  const int64_t M = ta ? A.dim(1) : A.dim(0), K = ta ? A.dim(0) : A.dim(1);
  const int64_t Kb = tb ? B.dim(1) : B.dim(0), N = tb ? B.dim(0) : B.dim(1);
  TANDEM_CHECK(K == Kb && D.dim(0) == M && D.dim(1) == N,
               "gemm_bf16 shapes: op(A)=[{},{}] op(B)=[{},{}] D={}", M, K, Kb, N, shape_str(D.shape()));
  TANDEM_CHECK(beta == 0.0f || (D.dtype() == DType::F32 && epi == Epilogue::None),
               "gemm_bf16: beta={} needs an f32 output and no epilogue (D {}, epilogue {})", beta,
               D.describe(), epilogue_name(epi));
  TANDEM_CHECK(alpha == 1.0f || epi == Epilogue::None, "gemm_bf16: alpha={} with epilogue {}",
               alpha, epilogue_name(epi));
  TANDEM_CHECK(!tensors_overlap(D, A) && !tensors_overlap(D, B), "gemm_bf16: D {} overlaps an operand",
               D.describe());
  const bool wants_bias = epi == Epilogue::Bias || epi == Epilogue::GeluAuxBias;
  const bool wants_aux = epi == Epilogue::GeluAuxBias || epi == Epilogue::DGelu;
  TANDEM_CHECK(wants_bias == (bias != nullptr) && wants_aux == (aux != nullptr),
               "gemm_bf16 epilogue {} takes {} bias and {} aux", epilogue_name(epi),
               wants_bias ? "a" : "no", wants_aux ? "an" : "no");
  if (bias) {
    check_device(be, *bias, "gemm_bf16 bias");
    check_shape(*bias, {N}, "gemm_bf16 bias");
    TANDEM_CHECK(bias->dtype() == D.dtype(), "gemm_bf16 bias {} must have the output's dtype ({})",
                 bias->describe(), D.describe());
  }
  if (aux) {
    check_device(be, *aux, "gemm_bf16 aux");
    check_shape(*aux, {M, N}, "gemm_bf16 aux");
    TANDEM_CHECK(aux->dtype() == D.dtype() && !tensors_overlap(*aux, D),
                 "gemm_bf16 aux {} must have the output's dtype and not overlap it ({})",
                 aux->describe(), D.describe());
  }
  if (M == 0 || N == 0) return;
  TANDEM_CHECK(K > 0, "gemm_bf16 with K=0 (D {})", D.describe());
  if (!on_cpu(be)) {
    if (try_fused(be, D, A, ta, B, tb, epi, bias, aux, alpha, beta)) return;
    TANDEM_CHECK(epi != Epilogue::None,
                 "cuBLASLt has no bf16 GEMM algorithm for M={} N={} K={} transA={} transB={} "
                 "(A {}, B {}, D {})", M, N, K, ta, tb, A.describe(), B.describe(), D.describe());
    note_unfused(epi, D, K);
  }
  gemm_unfused(be, D, A, ta, B, tb, epi, bias, aux, alpha, beta);
}

void linear_gelu_forward(Backend& be, Tensor& out, Tensor& pre, const Tensor& x, const Tensor& W,
                         const Tensor& b) {
  if (!is_bf16(W)) {  // fp32: the unfused ops, exactly as before mixed precision existed
    linear_forward(be, pre, x, W, &b);
    gelu_forward(be, out, pre);
    return;
  }
  TANDEM_CHECK(x.ndim() == 2 && W.ndim() == 2 && W.dim(1) == x.dim(1),
               "linear_gelu_forward: x {} does not match W {}", x.describe(), W.describe());
  const Tensor x16 = to_bf16(be, x);
  gemm_bf16(be, out, x16, false, W, true, Epilogue::GeluAuxBias, &b, &pre);
}

void linear_backward_dgelu(Backend& be, Tensor& dpre, Tensor& dW, Tensor& db, const Tensor& dy,
                           const Tensor& act, const Tensor& W, const Tensor& pre) {
  if (!is_bf16(W)) {  // fp32: the unfused ops, exactly as before mixed precision existed
    linear_backward(be, &dpre, dW, &db, dy, act, W);
    gelu_backward(be, dpre, pre, dpre);
    return;
  }
  const int64_t N = act.dim(0), in = act.dim(1), out = W.dim(0);
  check_shape(dy, {N, out}, "linear_backward_dgelu dy");
  check_shape(dW, {out, in}, "linear_backward_dgelu dW");
  check_shape(pre, {N, in}, "linear_backward_dgelu pre");
  const Tensor dy16 = to_bf16(be, dy), act16 = to_bf16(be, act);
  gemm_bf16(be, dW, dy16, true, act16, false, Epilogue::None, nullptr, nullptr, 1.0f, 1.0f);
  bias_backward(be, db, dy);
  Tensor aux = pre;  // read only (DGelu)
  gemm_bf16(be, dpre, dy16, false, W, false, Epilogue::DGelu, nullptr, &aux);
}

}  // namespace tandem::kernels
