// Mixed precision (Precision::BF16) at the model level, on the CPU backend's reference path:
// the bf16 copy of the weights follows the fp32 masters only when refreshed; bf16 gradients
// track the fp32 ones within the rounding the precision implies, and really differ from them;
// recompute modes and micro-batch accumulation keep their meaning; fp32 stays exactly fp32;
// activation memory is smaller.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "kernels/cast.h"
#include "runtime/model/gpt.h"

namespace tandem {
namespace {

struct Bf16Run {
  std::unique_ptr<Backend> be = make_cpu_backend(2);
  std::unique_ptr<Communicator> tp = make_self_communicator("tp");
  ModelOptions opt;
  int64_t b = 4, T = 16;
  std::vector<int32_t> x, y;
  Bf16Run() {
    opt.layers = 2;
    opt.dim = 32;
    opt.heads = 2;
    opt.vocab = 60;
    opt.seq_len = 16;
    std::mt19937 rng(9);
    for (int64_t i = 0; i < b * T; ++i) {
      x.push_back(static_cast<int32_t>(rng() % opt.vocab));
      y.push_back(static_cast<int32_t>(rng() % opt.vocab));
    }
  }
  std::unique_ptr<Gpt> model(Precision p, Recompute rc = Recompute::None) {
    auto m = std::make_unique<Gpt>(*be, opt, StageLayout{}, *tp, rc, 1, true, p);
    m->init(7);
    return m;
  }
  double loss(Gpt& m) {
    auto st = m.forward(b, T, x.data(), nullptr, y.data(), false, 0.0f);
    return st->loss_sum / static_cast<double>(st->loss_tokens);
  }
  std::vector<float> grads(Gpt& m, int micro = 1) {
    m.params().zero_grads();
    const int64_t per = b / micro;
    for (int i = 0; i < micro; ++i) {
      auto st = m.forward(per, T, x.data() + i * per * T, nullptr, y.data() + i * per * T, true,
                          1.0f / static_cast<float>(b * T));
      m.backward(*st, nullptr);
    }
    const Tensor& g = m.params().grads();
    return std::vector<float>(g.f32(), g.f32() + g.numel());
  }
};

// ||a - b|| / ||b|| over parameter p's elements.
double rel_l2(const std::vector<float>& a, const std::vector<float>& b, const Param& p) {
  double d = 0, r = 0;
  for (int64_t j = p.offset; j < p.offset + p.numel; ++j) {
    d += (static_cast<double>(a[j]) - b[j]) * (static_cast<double>(a[j]) - b[j]);
    r += static_cast<double>(b[j]) * b[j];
  }
  return r > 0 ? std::sqrt(d / r) : std::sqrt(d);
}

TEST(GptBf16, TheBf16CopyFollowsTheMastersWhenRefreshed) {
  Bf16Run run;
  auto m = run.model(Precision::BF16);
  ParamStore& s = m->params();
  ASSERT_TRUE(s.has_bf16());
  EXPECT_EQ(s.values_bf16().dtype(), DType::BF16);
  auto copy_matches = [&] {
    Tensor want = kernels::to_bf16(*run.be, s.values());
    return std::memcmp(want.raw(), s.values_bf16().raw(), want.nbytes()) == 0;
  };
  EXPECT_TRUE(copy_matches()) << "init() fills the copy";
  for (const Param& p : s.all()) {  // each parameter's view is its slice of the flat copy
    EXPECT_EQ(p.value_bf16.shape(), p.value.shape()) << p.spec.name;
    EXPECT_EQ(p.value_bf16.data<bf16>(), s.values_bf16().data<bf16>() + p.offset) << p.spec.name;
  }
  const double before = run.loss(*m);
  Param& fc = s.get("h.0.mlp.fc.w");
  for (int64_t j = 0; j < fc.numel; ++j) fc.value.f32()[j] *= 3.0f;  // a new master value
  EXPECT_FALSE(copy_matches());
  EXPECT_EQ(run.loss(*m), before) << "the GEMMs read the bf16 copy, not the masters";
  s.refresh_bf16();
  EXPECT_TRUE(copy_matches());
  EXPECT_NE(run.loss(*m), before);
  auto fp32 = run.model(Precision::F32);
  EXPECT_FALSE(fp32->params().has_bf16());
}

TEST(GptBf16, GradientsTrackFp32WithinBf16Rounding) {
  Bf16Run run;
  auto m32 = run.model(Precision::F32);
  auto m16 = run.model(Precision::BF16);
  const double l32 = run.loss(*m32), l16 = run.loss(*m16);
  // Loss: the logits carry ~2^-8 relative error from their rounded inputs; averaged over the
  // batch it moves the mean loss far less than 2^-8 of itself.
  EXPECT_NEAR(l16, l32, std::ldexp(l32, -8));
  EXPECT_NE(l16, l32) << "bf16 must actually round";
  const std::vector<float> g32 = run.grads(*m32), g16 = run.grads(*m16);
  // Per tensor: each of the ~12 rounding points on the longest gradient path (ln, att, fc, gelu,
  // lnf, the logit gradient, the dy of every GEMM, the weights) perturbs every element by up to
  // 2^-8 relative, independently, so the relative L2 error stays near sqrt(12) 2^-8 ~ 2^-6.2
  // (measured: 6.6e-3 ~ 2^-7.2); 2^-4 leaves room for the attention and LayerNorm Jacobians.
  double worst = 0;
  for (const Param& p : m32->params().all()) {
    const double r = rel_l2(g16, g32, p);
    worst = std::max(worst, r);
    EXPECT_LE(r, 1.0 / 16) << p.spec.name;
  }
  EXPECT_GT(worst, 1e-4) << "bf16 gradients equal to fp32's: the bf16 path did not run";
  std::printf("bf16 vs fp32: loss %.6f vs %.6f, worst per-tensor gradient difference %.2e\n", l16,
              l32, worst);
}

TEST(GptBf16, RecomputeAndMicroBatchesKeepTheirMeaning) {
  Bf16Run run;
  auto none = run.model(Precision::BF16, Recompute::None);
  auto sel = run.model(Precision::BF16, Recompute::Selective);
  auto full = run.model(Precision::BF16, Recompute::Full);
  const std::vector<float> g0 = run.grads(*none), g1 = run.grads(*sel), g2 = run.grads(*full);
  for (const Param& p : none->params().all()) {
    // Full recompute re-runs the same forward: the same numbers.
    EXPECT_LE(rel_l2(g2, g0, p), 1e-6) << "full, " << p.spec.name;
    // Selective rebuilds the GELU output from its saved bf16 input (round(gelu(round(pre)))
    // instead of round(gelu(pre))): fc_proj's weight gradient sees one bf16 unit of change.
    EXPECT_LE(rel_l2(g1, g0, p), 1.0 / 64) << "selective, " << p.spec.name;
  }
  // Two micro-batches accumulate fp32 gradients of the same bf16 products (different GEMM
  // shapes only change the fp32 summation order).
  const std::vector<float> two = run.grads(*none, 2);
  double worst = 0;
  for (const Param& p : none->params().all()) {
    worst = std::max(worst, rel_l2(two, g0, p));
    EXPECT_LE(rel_l2(two, g0, p), 1e-4) << p.spec.name;
  }
  std::printf("bf16, 2 micro-batches vs 1: worst per-tensor gradient difference %.2e\n", worst);
}

TEST(GptBf16, KeepsLessActivationMemory) {
  Bf16Run run;
  auto m32 = run.model(Precision::F32), m16 = run.model(Precision::BF16);
  // none: ln1, ln2 (2C), fc and gelu (8 Cl) at 2 bytes instead of 4 per token and layer.
  const int64_t saved = (2 * run.opt.dim + 8 * run.opt.dim) * 2 * run.opt.layers * run.b * run.T;
  EXPECT_EQ(m32->activation_bytes(run.b, run.T) - m16->activation_bytes(run.b, run.T), saved);
}

}  // namespace
}  // namespace tandem
