// GPT model tests: whole-model finite-difference gradient check, recompute modes and
// micro-batch accumulation give the same gradients, layout-independent init and sharding.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/model/gpt.h"
#include "tests/support/fake_communicator.h"

namespace tandem {
namespace {

ModelOptions tiny_model() {
  ModelOptions m;
  m.layers = 2;
  m.dim = 16;
  m.heads = 2;
  m.vocab = 40;
  m.seq_len = 8;
  return m;
}

std::vector<int32_t> random_tokens(int64_t n, int vocab, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

struct TinyRun {
  std::unique_ptr<Backend> be = make_cpu_backend(2);
  std::unique_ptr<Communicator> tp = make_self_communicator("tp");
  ModelOptions opt = tiny_model();
  int64_t b = 2, T = 8;
  std::vector<int32_t> x = random_tokens(b * T, opt.vocab, 1), y = random_tokens(b * T, opt.vocab, 2);

  std::unique_ptr<Gpt> model(Recompute rc) {
    auto m = std::make_unique<Gpt>(*be, opt, StageLayout{}, *tp, rc);
    m->init(7);
    return m;
  }
  // Sum of token losses (no backward).
  double loss(Gpt& m) { return m.forward(b, T, x.data(), nullptr, y.data(), false, 0.0f)->loss_sum; }
  // Gradients of the loss SUM, accumulated over `micro` micro-batches.
  std::vector<float> grads(Gpt& m, int micro = 1) {
    m.params().zero_grads();
    const int64_t per = b / micro;
    for (int i = 0; i < micro; ++i) {
      auto st = m.forward(per, T, x.data() + i * per * T, nullptr, y.data() + i * per * T, true, 1.0f);
      m.backward(*st, nullptr);
    }
    const Tensor& g = m.params().grads();
    return std::vector<float>(g.f32(), g.f32() + g.numel());
  }
};

TEST(Gpt, WholeModelGradientMatchesFiniteDifferences) {
  TinyRun run;
  auto m = run.model(Recompute::None);
  std::vector<float> analytic = run.grads(*m);
  float* w = m->params().values().f32();
  const int64_t n = m->params().numel();
  std::mt19937 rng(3);
  // Every parameter tensor gets probed at several elements (padding rows of wte excluded:
  // their gradient must be exactly zero, checked below).
  const float eps = 5e-3f;
  int checked = 0;
  for (const Param& p : m->params().all()) {
    for (int probe = 0; probe < 6; ++probe) {
      int64_t j = p.offset + static_cast<int64_t>(rng() % p.numel);
      if (p.spec.name == "wte" && (j - p.offset) / run.opt.dim >= run.opt.vocab) continue;
      const float saved = w[j];
      w[j] = saved + eps;
      const double lp = run.loss(*m);
      w[j] = saved - eps;
      const double lm = run.loss(*m);
      w[j] = saved;
      const double numeric = (lp - lm) / (2.0 * eps);
      // fp32 central differences (eps 5e-3: truncation error ~eps^2, rounding ~1e-6/eps):
      // 2% relative plus 2e-3 absolute, on gradients of order 0.1-1.
      EXPECT_NEAR(analytic[j], numeric, 2e-2 * std::fabs(numeric) + 2e-3)
          << p.spec.name << " element " << (j - p.offset);
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
  // Padding rows of the tied embedding never receive gradient.
  const Param& wte = m->params().get("wte");
  for (int64_t r = run.opt.vocab; r < run.opt.padded_vocab(); ++r)
    for (int c = 0; c < run.opt.dim; ++c) ASSERT_EQ(analytic[wte.offset + r * run.opt.dim + c], 0.0f);
  (void)n;
}

TEST(Gpt, RecomputeModesGiveIdenticalGradients) {
  TinyRun run;
  auto none = run.model(Recompute::None);
  auto sel = run.model(Recompute::Selective);
  auto full = run.model(Recompute::Full);
  std::vector<float> g0 = run.grads(*none), g1 = run.grads(*sel), g2 = run.grads(*full);
  ASSERT_EQ(g0.size(), g1.size());
  for (size_t i = 0; i < g0.size(); ++i) {
    ASSERT_NEAR(g0[i], g1[i], 1e-6f + 1e-5f * std::fabs(g0[i])) << "selective, element " << i;
    ASSERT_NEAR(g0[i], g2[i], 1e-6f + 1e-5f * std::fabs(g0[i])) << "full, element " << i;
  }
}

TEST(Gpt, RecomputeFullKeepsLessActivationMemory) {
  TinyRun run;
  auto none = run.model(Recompute::None);
  auto full = run.model(Recompute::Full);
  EXPECT_LT(full->activation_bytes(run.b, run.T) * 4, none->activation_bytes(run.b, run.T));
  // Measured: bytes held by the allocator between forward and backward.
  auto held = [&](Gpt& m) {
    m.params().zero_grads();
    const size_t before = run.be->allocator().stats().current;
    auto st = m.forward(run.b, run.T, run.x.data(), nullptr, run.y.data(), true, 1.0f);
    const size_t during = run.be->allocator().stats().current;
    m.backward(*st, nullptr);
    return during - before;
  };
  EXPECT_LT(held(*full), held(*none));
}

TEST(Gpt, MicroBatchAccumulationMatchesOneBatch) {
  TinyRun run;
  auto m = run.model(Recompute::Selective);
  std::vector<float> one = run.grads(*m, 1), two = run.grads(*m, 2);
  for (size_t i = 0; i < one.size(); ++i)
    ASSERT_NEAR(one[i], two[i], 1e-6f + 1e-5f * std::fabs(one[i])) << "element " << i;
}

TEST(Gpt, InitialisationIsLayoutIndependent) {
  // Rank 1 of a 2-way tensor-parallel layout holds exactly its slice of the 1-rank weights.
  auto be = make_cpu_backend(1);
  auto self = make_self_communicator("tp");
  testing::LayoutOnlyCommunicator r1(1, 2);
  ModelOptions opt = tiny_model();
  Gpt whole(*be, opt, StageLayout{}, *self, Recompute::None);
  Gpt shard(*be, opt, StageLayout{}, r1, Recompute::None);
  whole.init(11);
  shard.init(11);
  for (const Param& p : shard.params().all()) {
    const Param& full = whole.params().get(p.spec.name);
    const float* fv = full.value.f32();
    for (int64_t j = 0; j < p.numel; ++j)
      ASSERT_EQ(p.value.f32()[j], fv[ParamStore::logical_index(p, j)]) << p.spec.name << " " << j;
  }
  // The qkv shard of rank 1 is heads [1, 2) of each of q, k, v.
  const Param& qkv = shard.params().get("h.0.attn.qkv.w");
  EXPECT_EQ(qkv.value.shape(), (Shape{3 * 8, 16}));
  EXPECT_EQ(ParamStore::logical_index(qkv, 0), 8 * 16);            // q row 8
  EXPECT_EQ(ParamStore::logical_index(qkv, 8 * 16), (16 + 8) * 16);  // k row 8
}

TEST(Gpt, LossStartsNearUniform) {
  TinyRun run;
  auto m = run.model(Recompute::None);
  const double mean = run.loss(*m) / static_cast<double>(run.b * run.T);
  EXPECT_NEAR(mean, std::log(static_cast<double>(run.opt.vocab)), 0.1);
}

}  // namespace
}  // namespace tandem
