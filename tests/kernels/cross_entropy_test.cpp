// Tests for kernels/cross_entropy.h on the CPU backend: single-shard forward against a
// double-precision log-softmax (padding columns excluded, ignored targets), the gradient by
// central finite differences, a vocabulary split into shards composed by hand with the
// MAX / SUM reductions (must match the single shard, forward and backward), an all-padding
// shard, in-place backward, and a GPT-2-sized vocabulary on the multi-threaded path.
#include "kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

Tensor make_targets(Backend& be, const std::vector<int32_t>& t) {
  Tensor out = be.empty({static_cast<int64_t>(t.size())}, DType::I32);
  std::copy(t.begin(), t.end(), out.i32());
  return out;
}

// Per-row loss and softmax in double over the first `vocab` columns of [N, Vp].
struct NaiveXent {
  std::vector<double> loss, max, sumexp, grad;  // grad = scale * (softmax - onehot)
};
NaiveXent naive_xent(const Tensor& logits, const std::vector<int32_t>& targets, int64_t vocab,
                     double scale) {
  const int64_t N = logits.dim(0), Vp = logits.dim(1);
  NaiveXent r;
  r.loss.assign(N, 0.0);
  r.max.assign(N, 0.0);
  r.sumexp.assign(N, 0.0);
  r.grad.assign(N * Vp, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const float* x = logits.f32() + n * Vp;
    double mx = -1e300, s = 0;
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, double(x[j]));
    for (int64_t j = 0; j < vocab; ++j) s += std::exp(x[j] - mx);
    r.max[n] = mx;
    r.sumexp[n] = s;
    if (targets[n] < 0) continue;
    r.loss[n] = std::log(s) + mx - x[targets[n]];
    for (int64_t j = 0; j < vocab; ++j)
      r.grad[n * Vp + j] = scale * (std::exp(x[j] - mx) / s - (j == targets[n] ? 1.0 : 0.0));
  }
  return r;
}

constexpr int64_t kN = 6, kVocab = 50, kPadded = 64;
const std::vector<int32_t> kTargets = {3, -1, 49, 0, 17, 31};

Tensor padded_logits(Backend& be, uint32_t seed) {
  Tensor logits = random_tensor(be, {kN, kPadded}, seed, -3.0f, 3.0f);
  // Padding columns hold large values: any leak into the max or the sum shows at once.
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t j = kVocab; j < kPadded; ++j) logits.f32()[n * kPadded + j] = 40.0f;
  return logits;
}

TEST(CrossEntropy, SingleShardForwardMatchesNaive) {
  auto be = make_cpu_backend(2);
  Tensor logits = padded_logits(*be, 1);
  Tensor targets = make_targets(*be, kTargets);
  Tensor losses = be->empty({kN}), rowmax = be->empty({kN}), sumexp = be->empty({kN});
  softmax_xent_forward(*be, losses, rowmax, sumexp, logits, targets, kVocab);
  const NaiveXent ref = naive_xent(logits, kTargets, kVocab, 1.0);
  TANDEM_EXPECT_CLOSE(rowmax.f32(), ref.max.data(), kN, 1e-30, 0.0, "rowmax");  // exact
  TANDEM_EXPECT_CLOSE(sumexp.f32(), ref.sumexp.data(), kN, 1e-6, 1e-6, "sumexp");
  TANDEM_EXPECT_CLOSE(losses.f32(), ref.loss.data(), kN, 1e-6, 1e-6, "losses");
  EXPECT_EQ(losses.f32()[1], 0.0f) << "ignored target must give zero loss";
}

// L = scale * sum(losses). Central differences with eps 1e-2 (the softmax's third derivative
// is small, truncation ~1e-5), only the perturbed row's fp32 loss changes: rounding noise
// ~5e-7 / 2e-2. Tolerance atol 2e-4 + rtol 1e-2 for gradients of size ~0.02 .. 1.
TEST(CrossEntropy, BackwardGradcheckWithPaddingAndIgnoredTarget) {
  auto be = make_cpu_backend(2);
  Tensor logits = padded_logits(*be, 2);
  Tensor targets = make_targets(*be, kTargets);
  Tensor losses = be->empty({kN}), rowmax = be->empty({kN}), sumexp = be->empty({kN});
  const float scale = 0.75f;
  auto loss = [&] {
    softmax_xent_forward(*be, losses, rowmax, sumexp, logits, targets, kVocab);
    double s = 0;
    for (int64_t n = 0; n < kN; ++n) s += losses.f32()[n];
    return scale * s;
  };
  loss();
  Tensor dlogits = be->empty({kN, kPadded});
  xent_backward(*be, dlogits, logits, rowmax, sumexp, targets, 0, kVocab, scale);
  testing::GradCheckOptions opt;
  opt.eps = 1e-2f;
  opt.atol = 2e-4;
  opt.rtol = 1e-2;
  opt.max_samples = logits.numel();
  // Padding columns are perturbed too: the loss must not change (numeric gradient 0), and
  // below their analytic gradient (like the ignored row's) must be exactly zero.
  testing::expect_gradient("xent dlogits", logits.f32(), logits.numel(), dlogits.f32(), loss, opt);
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t j = 0; j < kPadded; ++j) {
      const float g = dlogits.f32()[n * kPadded + j];
      if (j >= kVocab) {
        EXPECT_EQ(g, 0.0f) << "padding column " << j << " row " << n;
      }
      if (kTargets[n] < 0) {
        EXPECT_EQ(g, 0.0f) << "ignored row " << n << " column " << j;
      }
    }
  const NaiveXent ref = naive_xent(logits, kTargets, kVocab, scale);
  TANDEM_EXPECT_CLOSE(dlogits.f32(), ref.grad.data(), dlogits.numel(), 1e-8, 2e-6,
                      "dlogits vs double softmax");
}

// Columns [c0, c1) of a [N, V] tensor as a new [N, c1 - c0] tensor.
Tensor columns(Backend& be, const Tensor& t, int64_t c0, int64_t c1) {
  const int64_t N = t.dim(0), V = t.dim(1);
  Tensor out = be.empty({N, c1 - c0});
  for (int64_t n = 0; n < N; ++n)
    std::copy(t.f32() + n * V + c0, t.f32() + n * V + c1, out.f32() + n * (c1 - c0));
  return out;
}

TEST(CrossEntropy, VocabShardsComposeToSingleShard) {
  auto be = make_cpu_backend(2);
  Tensor logits = padded_logits(*be, 3);
  Tensor targets = make_targets(*be, kTargets);
  // Single shard.
  Tensor losses = be->empty({kN}), rowmax = be->empty({kN}), sumexp = be->empty({kN});
  softmax_xent_forward(*be, losses, rowmax, sumexp, logits, targets, kVocab);
  Tensor dlogits = be->empty({kN, kPadded});
  xent_backward(*be, dlogits, logits, rowmax, sumexp, targets, 0, kVocab, 0.5f);

  // Two shards of 32 columns: [0, 32) all real, [32, 64) with 18 real and 14 padding.
  const int64_t W = kPadded / 2;
  Tensor shard[2] = {columns(*be, logits, 0, W), columns(*be, logits, W, kPadded)};
  std::vector<float> gmax(kN, -INFINITY), gsum(kN, 0.0f), gtl(kN, 0.0f);
  for (int s = 0; s < 2; ++s) {  // row_max, then "all-reduce MAX"
    Tensor m = be->empty({kN});
    xent_row_max(*be, m, shard[s], s * W, kVocab);
    for (int64_t n = 0; n < kN; ++n) gmax[n] = std::max(gmax[n], m.f32()[n]);
  }
  Tensor gmax_t = be->empty({kN});
  std::copy(gmax.begin(), gmax.end(), gmax_t.f32());
  for (int s = 0; s < 2; ++s) {  // sumexp and target logit with the global max, "all-reduce SUM"
    Tensor se = be->empty({kN}), tl = be->empty({kN});
    xent_row_sumexp(*be, se, shard[s], gmax_t, s * W, kVocab);
    xent_target_logit(*be, tl, shard[s], targets, s * W);
    for (int64_t n = 0; n < kN; ++n) {
      gsum[n] += se.f32()[n];
      gtl[n] += tl.f32()[n];
    }
  }
  Tensor gsum_t = be->empty({kN}), gtl_t = be->empty({kN}), slosses = be->empty({kN});
  std::copy(gsum.begin(), gsum.end(), gsum_t.f32());
  std::copy(gtl.begin(), gtl.end(), gtl_t.f32());
  xent_losses(*be, slosses, gmax_t, gsum_t, gtl_t, targets);

  std::vector<double> single(losses.f32(), losses.f32() + kN);
  TANDEM_EXPECT_CLOSE(slosses.f32(), single.data(), kN, 1e-6, 1e-6, "sharded losses");
  for (int64_t n = 0; n < kN; ++n) EXPECT_EQ(gmax[n], rowmax.f32()[n]) << "row " << n;

  for (int s = 0; s < 2; ++s) {
    Tensor ds = be->empty({kN, W});
    xent_backward(*be, ds, shard[s], gmax_t, gsum_t, targets, s * W, kVocab, 0.5f);
    Tensor expect = columns(*be, dlogits, s * W, (s + 1) * W);
    std::vector<double> ref(expect.f32(), expect.f32() + expect.numel());
    TANDEM_EXPECT_CLOSE(ds.f32(), ref.data(), ds.numel(), 1e-8, 2e-6,
                        ::testing::Message() << "shard " << s << " dlogits");
  }
}

TEST(CrossEntropy, AllPaddingShardIsNeutral) {
  auto be = make_cpu_backend(2);
  Tensor logits = random_tensor(*be, {kN, 16}, 4);
  Tensor targets = make_targets(*be, kTargets);
  Tensor m = be->empty({kN}), se = be->empty({kN}), zeros = be->zeros({kN});
  xent_row_max(*be, m, logits, /*col_begin=*/64, kVocab);
  xent_row_sumexp(*be, se, logits, zeros, 64, kVocab);
  for (int64_t n = 0; n < kN; ++n) {
    EXPECT_EQ(m.f32()[n], -INFINITY);
    EXPECT_EQ(se.f32()[n], 0.0f);
  }
  Tensor ones = be->empty({kN});
  std::fill(ones.f32(), ones.f32() + kN, 1.0f);
  Tensor d = be->empty({kN, 16});
  xent_backward(*be, d, logits, zeros, ones, targets, 64, kVocab, 1.0f);
  for (int64_t i = 0; i < d.numel(); ++i) ASSERT_EQ(d.f32()[i], 0.0f) << i;
}

TEST(CrossEntropy, BackwardInPlaceMatchesOutOfPlace) {
  auto be = make_cpu_backend(2);
  Tensor logits = padded_logits(*be, 5);
  Tensor targets = make_targets(*be, kTargets);
  Tensor losses = be->empty({kN}), rowmax = be->empty({kN}), sumexp = be->empty({kN});
  softmax_xent_forward(*be, losses, rowmax, sumexp, logits, targets, kVocab);
  Tensor d = be->empty({kN, kPadded});
  xent_backward(*be, d, logits, rowmax, sumexp, targets, 0, kVocab, 1.0f / 5);
  xent_backward(*be, logits, logits, rowmax, sumexp, targets, 0, kVocab, 1.0f / 5);
  EXPECT_EQ(testing::to_vector(logits), testing::to_vector(d));
}

TEST(CrossEntropy, Gpt2VocabMultiThreaded) {
  auto be = make_cpu_backend(2);
  const int64_t N = 24, vocab = 50257, Vp = 50304;
  Tensor logits = random_tensor(*be, {N, Vp}, 6, -8.0f, 8.0f);
  std::vector<int32_t> t(N);
  for (int64_t n = 0; n < N; ++n) t[n] = n == 3 ? -100 : static_cast<int32_t>((n * 7919) % vocab);
  t[5] = vocab - 1;
  Tensor targets = make_targets(*be, t);
  Tensor losses = be->empty({N}), rowmax = be->empty({N}), sumexp = be->empty({N});
  softmax_xent_forward(*be, losses, rowmax, sumexp, logits, targets, vocab);
  const NaiveXent ref = naive_xent(logits, t, vocab, 1.0 / N);
  // sumexp sums ~50k terms in fp32 (16 SIMD partial sums): relative error a few 1e-6.
  TANDEM_EXPECT_CLOSE(sumexp.f32(), ref.sumexp.data(), N, 0.0, 1e-5, "sumexp 50k");
  TANDEM_EXPECT_CLOSE(losses.f32(), ref.loss.data(), N, 1e-5, 1e-5, "losses 50k");
  xent_backward(*be, logits, logits, rowmax, sumexp, targets, 0, vocab, 1.0f / N);
  TANDEM_EXPECT_CLOSE(logits.f32(), ref.grad.data(), logits.numel(), 1e-10, 3e-6, "dlogits 50k");
}

}  // namespace
}  // namespace tandem::kernels
