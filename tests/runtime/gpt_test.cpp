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
  // Gradients of the loss SUM, accumulated over `micro` micro-batches (copied to the host).
  std::vector<float> grads(Gpt& m, int micro = 1) {
    m.params().zero_grads();
    const int64_t per = b / micro;
    for (int i = 0; i < micro; ++i) {
      auto st = m.forward(per, T, x.data() + i * per * T, nullptr, y.data() + i * per * T, true, 1.0f);
      m.backward(*st, nullptr);
    }
    const Tensor& g = m.params().grads();
    Tensor h = be->host_empty(g.shape());
    be->copy(h, g);
    return std::vector<float>(h.f32(), h.f32() + h.numel());
  }
  // Bytes the backend's allocator holds between forward and backward: the saved activations.
  size_t held(Gpt& m) {
    m.params().zero_grads();
    be->synchronize();
    const size_t before = be->allocator().stats().current;
    auto st = m.forward(b, T, x.data(), nullptr, y.data(), true, 1.0f);
    const size_t during = be->allocator().stats().current;
    m.backward(*st, nullptr);
    be->synchronize();
    return during - before;
  }
  // Bytes one block's attention probabilities [b, H, T, T] and GELU output [b*T, 4C] take.
  size_t probs_bytes() const { return static_cast<size_t>(b * opt.heads * T * T) * 4; }
  size_t gelu_bytes() const { return static_cast<size_t>(b * T * 4 * opt.dim) * 4; }
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
  EXPECT_LT(run.held(*full), run.held(*none));
}

// recompute none saves what the backward of the backend reads. On the CPU that includes the
// attention probabilities (its backward uses them): none keeps exactly probabilities + GELU
// output per block more than selective, measured and in the memory report's estimate.
TEST(Gpt, RecomputeNoneOnCpuSavesTheProbabilities) {
  TinyRun run;
  auto none = run.model(Recompute::None);
  auto sel = run.model(Recompute::Selective);
  const size_t per_block = run.probs_bytes() + run.gelu_bytes();
  EXPECT_EQ(run.held(*none) - run.held(*sel), run.opt.layers * per_block);
  EXPECT_EQ(none->activation_bytes(run.b, run.T) - sel->activation_bytes(run.b, run.T),
            static_cast<int64_t>(run.opt.layers * per_block));
}

// The CUDA attention backward recomputes the probabilities from q, k and lse whether or not
// they were saved, so on the GPU recompute none does not keep the [b, H, T, T] tensors: it
// holds exactly the probabilities of every block fewer bytes than the CPU path, and the same
// gradients.
TEST(Gpt, RecomputeNoneOnCudaKeepsNoProbabilities) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  TinyRun cpu_run, gpu_run;
  gpu_run.be = make_backend(BackendOptions{.device = "cuda"});
  auto cpu_none = cpu_run.model(Recompute::None);
  auto gpu_none = gpu_run.model(Recompute::None);
  auto gpu_sel = gpu_run.model(Recompute::Selective);
  const size_t layers = static_cast<size_t>(gpu_run.opt.layers);
  const size_t gpu_held = gpu_run.held(*gpu_none);
  EXPECT_EQ(gpu_held - gpu_run.held(*gpu_sel), layers * gpu_run.gelu_bytes())
      << "on the GPU, none keeps only the GELU output more than selective";
  EXPECT_EQ(cpu_run.held(*cpu_none) - gpu_held, layers * gpu_run.probs_bytes())
      << "saved activation bytes, CPU path minus GPU path, recompute none";
  EXPECT_EQ(cpu_none->activation_bytes(gpu_run.b, gpu_run.T) -
                gpu_none->activation_bytes(gpu_run.b, gpu_run.T),
            static_cast<int64_t>(layers * gpu_run.probs_bytes()));
  const std::vector<float> gc = cpu_run.grads(*cpu_none), gg = gpu_run.grads(*gpu_none);
  ASSERT_EQ(gc.size(), gg.size());
  for (size_t i = 0; i < gc.size(); ++i)
    ASSERT_NEAR(gg[i], gc[i], 1e-5f + 1e-3f * std::fabs(gc[i])) << "gradient element " << i;
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
