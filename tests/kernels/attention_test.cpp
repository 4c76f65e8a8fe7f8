// Tests for kernels/attention.h on the CPU backend: forward (out, lse, probs) against a naive
// double-precision softmax(QK^T/sqrt(D))V, backward by central finite differences with saved
// probabilities AND with the recompute path (probs = null), and both backward paths against a
// naive double-precision backward at shapes that cross the kernel's block boundaries.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

struct Ref {
  std::vector<double> out, lse, probs, dqkv;
};

// Naive causal attention in double; when dout is given, also the backward.
Ref naive_attention(const float* qkv, const float* dout, int64_t B, int64_t T, int64_t H,
                    int64_t D) {
  const int64_t C3 = 3 * H * D, HD = H * D;
  const double scale = 1.0 / std::sqrt(double(D));
  Ref r;
  r.out.assign(B * T * HD, 0.0);
  r.lse.assign(B * H * T, 0.0);
  r.probs.assign(B * H * T * T, 0.0);
  if (dout) r.dqkv.assign(B * T * C3, 0.0);
  auto q = [&](int64_t b, int64_t t, int64_t h) { return qkv + (b * T + t) * C3 + h * D; };
  auto k = [&](int64_t b, int64_t t, int64_t h) { return q(b, t, h) + HD; };
  auto v = [&](int64_t b, int64_t t, int64_t h) { return q(b, t, h) + 2 * HD; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      std::vector<double> P(T * T, 0.0);
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> s(i + 1);
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(q(b, i, h)[d]) * k(b, j, h)[d];
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += std::exp(s[j] - mx);
        r.lse[(b * H + h) * T + i] = mx + std::log(sum);
        for (int64_t j = 0; j <= i; ++j) {
          P[i * T + j] = std::exp(s[j] - mx) / sum;
          r.probs[((b * H + h) * T + i) * T + j] = P[i * T + j];
          for (int64_t d = 0; d < D; ++d)
            r.out[(b * T + i) * HD + h * D + d] += P[i * T + j] * v(b, j, h)[d];
        }
      }
      if (!dout) continue;
      auto go = [&](int64_t t) { return dout + (b * T + t) * HD + h * D; };
      auto dq = [&](int64_t t) { return r.dqkv.data() + (b * T + t) * C3 + h * D; };
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> dP(i + 1);
        double Di = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(go(i)[d]) * v(b, j, h)[d];
          dP[j] = dot;
          Di += P[i * T + j] * dot;
        }
        for (int64_t j = 0; j <= i; ++j) {
          const double dS = P[i * T + j] * (dP[j] - Di) * scale;
          for (int64_t d = 0; d < D; ++d) {
            dq(i)[d] += dS * k(b, j, h)[d];
            dq(j)[HD + d] += dS * q(b, i, h)[d];
            dq(j)[2 * HD + d] += P[i * T + j] * go(i)[d];
          }
        }
      }
    }
  return r;
}

TEST(Attention, ForwardMatchesNaive) {
  auto be = make_cpu_backend(2);
  struct Case {
    int64_t B, T, H, D;
  };
  // Odd T and D (padding, partial blocks), T crossing several 32-row blocks and the 256-key
  // chunks of the kernel's products, and D = 64.
  for (Case c : {Case{2, 37, 3, 20}, Case{1, 130, 2, 64}, Case{3, 1, 1, 8}, Case{1, 300, 1, 64}}) {
    const auto [B, T, H, D] = c;
    Tensor qkv = random_tensor(*be, {B, T, 3 * H * D}, 1, -1.5f, 1.5f);
    Tensor out = be->empty({B, T, H * D}), lse = be->empty({B, H, T});
    Tensor probs = random_tensor(*be, {B, H, T, T}, 2);  // garbage above the diagonal
    attention_forward(*be, out, lse, &probs, qkv, H);
    const Ref ref = naive_attention(qkv.f32(), nullptr, B, T, H, D);
    const std::string msg = "B " + std::to_string(B) + " T " + std::to_string(T) + " H " +
                            std::to_string(H) + " D " + std::to_string(D);
    TANDEM_EXPECT_CLOSE(out.f32(), ref.out.data(), out.numel(), 1e-6, 1e-5, msg + " out");
    TANDEM_EXPECT_CLOSE(lse.f32(), ref.lse.data(), lse.numel(), 1e-6, 1e-6, msg + " lse");
    TANDEM_EXPECT_CLOSE(probs.f32(), ref.probs.data(), probs.numel(), 1e-8, 1e-5, msg + " probs");
    // Without probs: the same out and lse.
    Tensor out2 = be->empty({B, T, H * D}), lse2 = be->empty({B, H, T});
    attention_forward(*be, out2, lse2, nullptr, qkv, H);
    EXPECT_EQ(testing::to_vector(out2), testing::to_vector(out)) << msg;
    EXPECT_EQ(testing::to_vector(lse2), testing::to_vector(lse)) << msg;
  }
}

// L = sum(out * R). Central differences with eps 1e-3 on qkv of scale ~1, L accumulated in
// double from the fp32 output (noise ~2e-4 in the quotient): tolerance atol 5e-4 + rtol 5e-3.
// Checked for every element of qkv, for the saved-probs and for the recompute backward.
TEST(Attention, BackwardGradcheckSavedAndRecomputed) {
  auto be = make_cpu_backend(2);
  const int64_t B = 2, T = 9, H = 2, D = 5;
  Tensor qkv = random_tensor(*be, {B, T, 3 * H * D}, 11, -1.5f, 1.5f);
  Tensor R = random_tensor(*be, {B, T, H * D}, 12);
  Tensor out = be->empty({B, T, H * D}), lse = be->empty({B, H, T});
  Tensor probs = be->empty({B, H, T, T});
  auto loss = [&] {
    attention_forward(*be, out, lse, nullptr, qkv, H);
    return testing::dot(out.f32(), R.f32(), out.numel());
  };
  attention_forward(*be, out, lse, &probs, qkv, H);
  Tensor dqkv_saved = be->empty(qkv.shape()), dqkv_recomp = be->empty(qkv.shape());
  attention_backward(*be, dqkv_saved, R, qkv, out, lse, &probs, H);
  attention_backward(*be, dqkv_recomp, R, qkv, out, lse, nullptr, H);
  testing::GradCheckOptions opt;
  opt.max_samples = qkv.numel();  // all 540 elements
  opt.atol = 5e-4;
  opt.rtol = 5e-3;
  testing::expect_gradient("attention dqkv (saved probs)", qkv.f32(), qkv.numel(), dqkv_saved.f32(),
                           loss, opt);
  testing::expect_gradient("attention dqkv (recomputed)", qkv.f32(), qkv.numel(), dqkv_recomp.f32(),
                           loss, opt);
}

// Both backward paths against the naive double backward, at shapes with several query
// blocks, a T that is not a multiple of the tile width, T > 256 (chunked products), and
// D = 64. fp32 vs double: tolerance atol 2e-6 + rtol 1e-5.
TEST(Attention, BackwardMatchesNaiveBothPaths) {
  auto be = make_cpu_backend(2);
  struct Case {
    int64_t B, T, H, D;
  };
  for (Case c : {Case{2, 100, 3, 64}, Case{1, 45, 2, 12}, Case{1, 290, 1, 64}}) {
    const auto [B, T, H, D] = c;
    Tensor qkv = random_tensor(*be, {B, T, 3 * H * D}, 21, -1.5f, 1.5f);
    Tensor dout = random_tensor(*be, {B, T, H * D}, 22);
    Tensor out = be->empty({B, T, H * D}), lse = be->empty({B, H, T});
    Tensor probs = be->empty({B, H, T, T});
    attention_forward(*be, out, lse, &probs, qkv, H);
    const Ref ref = naive_attention(qkv.f32(), dout.f32(), B, T, H, D);
    for (bool saved : {true, false}) {
      Tensor dqkv = be->empty(qkv.shape());  // overwritten: start from NaN
      for (int64_t i = 0; i < dqkv.numel(); ++i)
        dqkv.f32()[i] = std::numeric_limits<float>::quiet_NaN();
      attention_backward(*be, dqkv, dout, qkv, out, lse, saved ? &probs : nullptr, H);
      TANDEM_EXPECT_CLOSE(dqkv.f32(), ref.dqkv.data(), dqkv.numel(), 2e-6, 1e-5,
                          ::testing::Message() << "T " << T << " D " << D
                                               << (saved ? " saved probs" : " recomputed"));
    }
  }
}

}  // namespace
}  // namespace tandem::kernels
