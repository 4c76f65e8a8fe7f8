// Tests for kernels/matmul.h on the CPU backend: GEMM in all four transpose combinations
// against a naive double-precision loop, the linear layer's forward values, its gradients by
// central finite differences (dx, dW, db), the accumulate semantics, and the bias kernels.
#include "kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

// C = alpha * op(A) op(B) + beta * C0 in double.
std::vector<double> naive_gemm(const Tensor& A, bool ta, const Tensor& B, bool tb,
                               const std::vector<float>& C0, int64_t M, int64_t N, int64_t K,
                               double alpha, double beta) {
  std::vector<double> C(M * N);
  const float* a = A.f32();
  const float* b = B.f32();
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double av = ta ? a[k * M + i] : a[i * K + k];
        const double bv = tb ? b[j * K + k] : b[k * N + j];
        s += av * bv;
      }
      C[i * N + j] = alpha * s + beta * C0[i * N + j];
    }
  return C;
}

TEST(Matmul, AllTransposeCombinationsMatchNaive) {
  auto be = make_cpu_backend(2);
  const int64_t M = 37, N = 29, K = 53;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor A = random_tensor(*be, ta ? Shape{K, M} : Shape{M, K}, 1 + ta);
      Tensor B = random_tensor(*be, tb ? Shape{N, K} : Shape{K, N}, 3 + tb);
      Tensor C = random_tensor(*be, {M, N}, 5);
      const std::vector<float> C0 = testing::to_vector(C);
      matmul(*be, C, A, ta, B, tb, 0.7f, 0.3f);
      const auto ref = naive_gemm(A, ta, B, tb, C0, M, N, K, 0.7, 0.3);
      // fp32 sums of 53 products of magnitude <= 1: errors ~5e-7.
      TANDEM_EXPECT_CLOSE(C.f32(), ref.data(), M * N, 2e-6, 2e-6,
                          ::testing::Message() << "transA " << ta << " transB " << tb);
    }
}

TEST(Matmul, BetaZeroOverwritesGarbage) {
  auto be = make_cpu_backend(2);
  const int64_t M = 8, N = 16, K = 5;
  Tensor A = random_tensor(*be, {M, K}, 7), B = random_tensor(*be, {K, N}, 8);
  Tensor C = be->empty({M, N});
  for (int64_t i = 0; i < C.numel(); ++i) C.f32()[i] = std::numeric_limits<float>::quiet_NaN();
  matmul(*be, C, A, false, B, false);
  const auto ref = naive_gemm(A, false, B, false, std::vector<float>(M * N, 0.0f), M, N, K, 1, 0);
  TANDEM_EXPECT_CLOSE(C.f32(), ref.data(), M * N, 1e-5, 1e-5, "beta 0 over NaN");
}

TEST(Matmul, SgemmRejectsBadLeadingDimension) {
  std::vector<float> a(12), b(12), c(16);
  // Row-major A [4 x 3] needs lda >= 3.
  EXPECT_THROW(cpu::sgemm(false, false, 4, 4, 3, 1.0f, a.data(), 2, b.data(), 4, 0.0f, c.data(), 4),
               Error);
}

TEST(Matmul, LinearForwardMatchesNaive) {
  auto be = make_cpu_backend(2);
  const int64_t N = 19, in = 24, out = 13;
  Tensor x = random_tensor(*be, {N, in}, 11), W = random_tensor(*be, {out, in}, 12);
  Tensor b = random_tensor(*be, {out}, 13);
  for (bool with_bias : {false, true}) {
    Tensor y = be->empty({N, out});
    linear_forward(*be, y, x, W, with_bias ? &b : nullptr);
    std::vector<double> ref(N * out);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < out; ++o) {
        double s = with_bias ? b.f32()[o] : 0.0;
        for (int64_t i = 0; i < in; ++i) s += double(x.f32()[n * in + i]) * W.f32()[o * in + i];
        ref[n * out + o] = s;
      }
    TANDEM_EXPECT_CLOSE(y.f32(), ref.data(), N * out, 2e-6, 2e-6,
                        with_bias ? "linear with bias" : "linear without bias");
  }
}

// L = sum(y * R), y = x W^T + b. linear is linear in each input, so central differences have
// no truncation error; eps = 1e-2 keeps fp32 rounding noise in the quotient near 1e-5, below
// the tolerance atol 1e-4 + rtol 1e-4.
TEST(Matmul, LinearBackwardGradcheck) {
  auto be = make_cpu_backend(2);
  const int64_t N = 6, in = 7, out = 5;
  Tensor x = random_tensor(*be, {N, in}, 21), W = random_tensor(*be, {out, in}, 22);
  Tensor b = random_tensor(*be, {out}, 23), R = random_tensor(*be, {N, out}, 24);
  Tensor y = be->empty({N, out});
  auto loss = [&] {
    linear_forward(*be, y, x, W, &b);
    return testing::dot(y.f32(), R.f32(), y.numel());
  };
  Tensor dx = be->empty({N, in}), dW = be->zeros({out, in}), db = be->zeros({out});
  linear_backward(*be, &dx, dW, &db, R, x, W);
  testing::GradCheckOptions opt;
  opt.eps = 1e-2f;
  opt.atol = 1e-4;
  opt.rtol = 1e-4;
  testing::expect_gradient("linear dx", x.f32(), x.numel(), dx.f32(), loss, opt);
  testing::expect_gradient("linear dW", W.f32(), W.numel(), dW.f32(), loss, opt);
  testing::expect_gradient("linear db", b.f32(), b.numel(), db.f32(), loss, opt);
}

TEST(Matmul, LinearBackwardAccumulates) {
  auto be = make_cpu_backend(2);
  const int64_t N = 9, in = 11, out = 6;
  Tensor x = random_tensor(*be, {N, in}, 31), W = random_tensor(*be, {out, in}, 32);
  Tensor dy = random_tensor(*be, {N, out}, 33);
  // Fresh gradients from zero.
  Tensor dx0 = be->empty({N, in}), dW0 = be->zeros({out, in}), db0 = be->zeros({out});
  linear_backward(*be, &dx0, dW0, &db0, dy, x, W);
  // Again on top of prior contents: dW, db always add; dx adds only with accumulate_dx.
  Tensor prior_x = random_tensor(*be, {N, in}, 34), prior_W = random_tensor(*be, {out, in}, 35);
  Tensor prior_b = random_tensor(*be, {out}, 36);
  Tensor dx = be->empty({N, in}), dW = be->empty({out, in}), db = be->empty({out});
  be->copy(dx, prior_x);
  be->copy(dW, prior_W);
  be->copy(db, prior_b);
  linear_backward(*be, &dx, dW, &db, dy, x, W, /*accumulate_dx=*/true);
  auto expect_sum = [](const Tensor& got, const Tensor& prior, const Tensor& fresh,
                       const char* what) {
    std::vector<double> ref(got.numel());
    for (int64_t i = 0; i < got.numel(); ++i) ref[i] = double(prior.f32()[i]) + fresh.f32()[i];
    TANDEM_EXPECT_CLOSE(got.f32(), ref.data(), got.numel(), 1e-6, 1e-6, what);
  };
  expect_sum(dx, prior_x, dx0, "dx accumulated");
  expect_sum(dW, prior_W, dW0, "dW accumulated");
  expect_sum(db, prior_b, db0, "db accumulated");
  // Without accumulate_dx, dx is overwritten (even NaN contents).
  for (int64_t i = 0; i < dx.numel(); ++i) dx.f32()[i] = std::numeric_limits<float>::quiet_NaN();
  Tensor dW2 = be->zeros({out, in});
  linear_backward(*be, &dx, dW2, nullptr, dy, x, W, /*accumulate_dx=*/false);
  std::vector<double> ref(dx0.f32(), dx0.f32() + dx0.numel());
  TANDEM_EXPECT_CLOSE(dx.f32(), ref.data(), dx.numel(), 1e-6, 1e-6, "dx overwritten");
}

TEST(Matmul, AddBiasAndBiasBackwardMatchNaive) {
  auto be = make_cpu_backend(2);
  // The second shape is large enough for the multi-threaded paths.
  for (auto [N, C] : {std::pair<int64_t, int64_t>{5, 7}, {300, 129}}) {
    Tensor y = random_tensor(*be, {N, C}, 41), b = random_tensor(*be, {C}, 42);
    std::vector<double> ref(N * C);
    for (int64_t i = 0; i < N * C; ++i) ref[i] = double(y.f32()[i]) + b.f32()[i % C];
    add_bias(*be, y, b);
    TANDEM_EXPECT_CLOSE(y.f32(), ref.data(), N * C, 1e-6, 1e-6, "add_bias");

    Tensor db = random_tensor(*be, {C}, 43);  // bias_backward adds into db
    std::vector<double> dref(db.f32(), db.f32() + C);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) dref[c] += y.f32()[n * C + c];
    bias_backward(*be, db, y);
    TANDEM_EXPECT_CLOSE(db.f32(), dref.data(), C, 2e-5, 2e-6, "bias_backward");
  }
}

}  // namespace
}  // namespace tandem::kernels
