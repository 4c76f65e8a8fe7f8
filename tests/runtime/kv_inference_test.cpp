// Cached inference: Gpt::forward_cached over a paged KV cache gives the same logits as the
// dense training forward on the whole context — for a full prefill, chunked prefills, and
// token-by-token decode, with several sequences of different lengths in one batch on
// scattered blocks. And the TokenSampler: greedy ties, top-k/top-p support, seeded draws.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "runtime/model/gpt.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/token_sampler.h"

namespace tandem {
namespace {

ModelOptions model_opts() {
  ModelOptions m;
  m.layers = 2;
  m.dim = 32;
  m.heads = 4;
  m.vocab = 97;
  m.seq_len = 40;
  return m;
}

struct Fixture {
  std::unique_ptr<Backend> be = make_cpu_backend(2);
  std::unique_ptr<Communicator> tp = make_self_communicator("tp");
  ModelOptions opt = model_opts();
  Gpt model{*be, opt, StageLayout{}, *tp, Recompute::None};
  Fixture() { model.init(11); }

  // Logits of the last position of `ctx` from the dense path.
  std::vector<float> dense_last(const std::vector<int32_t>& ctx) {
    const int64_t T = static_cast<int64_t>(ctx.size());
    auto st = model.forward(1, T, ctx.data(), nullptr, nullptr, false, 1.0f);
    Tensor h = st->output.rows(T - 1, T);
    Tensor l = model.head_logits(h);
    return std::vector<float>(l.f32(), l.f32() + opt.vocab);
  }
};

std::vector<int32_t> random_ids(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return v;
}

void expect_close(const std::vector<float>& a, const float* b, int n, const std::string& what) {
  float worst = 0.0f;
  for (int i = 0; i < n; ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  EXPECT_LT(worst, 2e-4f) << what;
}

TEST(KvInference, PrefillChunksAndDecodeMatchDenseForward) {
  Fixture f;
  const int block_tokens = 5;
  auto cache = f.model.make_kv_cache(/*num_blocks=*/32, block_tokens);
  // Three sequences with scattered, interleaved blocks.
  const std::vector<int> prompt_len = {7, 13, 3};
  std::vector<std::vector<int32_t>> seqs, blocks(3);
  for (int s = 0; s < 3; ++s) seqs.push_back(random_ids(prompt_len[s] + 6, f.opt.vocab, 100 + s));
  std::vector<int32_t> free_blocks(32);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(5));
  for (int i = 0; i < 24; ++i) blocks[i % 3].push_back(free_blocks[i]);

  std::vector<int> past(3, 0);
  // Step 1: sequence 0 whole prompt, sequence 1 first chunk of 6, sequence 2 whole prompt.
  // Step 2: sequence 1 rest of its prompt (7), sequences 0 and 2 decode one token.
  // Steps 3..6: every sequence decodes one token.
  auto step = [&](const std::vector<int>& take) {
    InferBatch b;
    std::vector<int> want;
    for (int s = 0; s < 3; ++s) {
      if (take[s] == 0) continue;
      std::vector<int32_t> ids(seqs[s].begin() + past[s], seqs[s].begin() + past[s] + take[s]);
      b.add_sequence(ids, past[s], blocks[s], block_tokens, true);
      past[s] += take[s];
      want.push_back(s);
    }
    Tensor h = f.model.forward_cached(b, nullptr, *cache);
    Tensor l = f.model.head_logits(h);
    ASSERT_EQ(l.dim(0), static_cast<int64_t>(want.size()));
    for (size_t i = 0; i < want.size(); ++i) {
      const int s = want[i];
      std::vector<int32_t> ctx(seqs[s].begin(), seqs[s].begin() + past[s]);
      expect_close(f.dense_last(ctx), l.f32() + i * f.model.local_vocab(), f.opt.vocab,
                   "sequence " + std::to_string(s) + " at length " + std::to_string(past[s]));
    }
  };
  step({7, 6, 3});
  step({1, 7, 1});
  for (int i = 0; i < 4; ++i) step({1, 1, 1});
}

TEST(KvInference, BatchValidationNamesTheProblem) {
  Fixture f;
  auto cache = f.model.make_kv_cache(4, 8);
  InferBatch b;
  b.add_sequence({1, 2, 3}, 0, {9}, 8, true);  // block 9 is outside a pool of 4
  try {
    f.model.forward_cached(b, nullptr, *cache);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("block 0 is 9 (pool 4)"), std::string::npos) << e.what();
  }
  InferBatch c;
  c.add_sequence({1, 200}, 0, {0}, 8, true);  // token 200 >= vocab 97
  EXPECT_THROW(f.model.forward_cached(c, nullptr, *cache), Error);
}

Tensor logits_tensor(Backend& be, const std::vector<std::vector<float>>& rows, int64_t V) {
  Tensor t = be.empty({static_cast<int64_t>(rows.size()), V});
  for (size_t r = 0; r < rows.size(); ++r) std::copy(rows[r].begin(), rows[r].end(), t.f32() + r * V);
  return t;
}

TEST(TokenSampler, GreedyPicksTheLowestIdOfATieAndIgnoresPadding) {
  auto be = make_cpu_backend(1);
  auto tp = make_self_communicator("tp");
  TokenSampler s(*be, *tp, 0, 8, 6);  // 2 padding columns
  Tensor t = logits_tensor(*be, {{0, 3, 1, 3, 0, 2, 9, 9}, {5, 0, 0, 0, 0, 0, 0, 0}}, 8);
  EXPECT_EQ(s.sample(t, {SamplingParams{}, SamplingParams{}}), (std::vector<int32_t>{1, 0}));
}

TEST(TokenSampler, TopKAndTopPKeepOnlyTheirSupportAndSeedsRepeat) {
  auto be = make_cpu_backend(1);
  auto tp = make_self_communicator("tp");
  const int64_t V = 50;
  TokenSampler s(*be, *tp, 0, V, V);
  std::vector<float> row(V);
  for (int64_t j = 0; j < V; ++j) row[j] = -0.05f * static_cast<float>(j);  // id 0 most likely
  Tensor t = logits_tensor(*be, {row}, V);
  std::map<int32_t, int> seen_k, seen_p, seen_all;
  for (int64_t step = 0; step < 400; ++step) {
    SamplingParams k{1.0f, 3, 1.0f, 42, step};
    SamplingParams p{1.0f, 0, 0.2f, 42, step};
    SamplingParams a{1.0f, 0, 1.0f, 42, step};
    ++seen_k[s.sample(t, {k})[0]];
    ++seen_p[s.sample(t, {p})[0]];
    ++seen_all[s.sample(t, {a})[0]];
    EXPECT_EQ(s.sample(t, {a})[0], s.sample(t, {a})[0]);  // same seed and step, same draw
  }
  ASSERT_FALSE(seen_k.empty());
  EXPECT_LE(seen_k.rbegin()->first, 2) << "top_k=3 drew outside ids 0..2";
  EXPECT_EQ(seen_k.size(), 3u);
  // Nucleus of 0.2: probabilities fall by e^-0.05 per id; the smallest prefix with mass >= 0.2
  // of the 50 ids holds 9 ids (computed from the geometric series).
  double z = 0, acc = 0;
  for (int64_t j = 0; j < V; ++j) z += std::exp(-0.05 * j);
  int nucleus = 0;
  while (acc < 0.2 * z) acc += std::exp(-0.05 * nucleus++);
  EXPECT_LE(seen_p.rbegin()->first, nucleus - 1);
  EXPECT_GE(static_cast<int>(seen_p.size()), nucleus - 3);
  EXPECT_GT(static_cast<int>(seen_all.size()), 30) << "plain sampling should reach most ids";
}

TEST(TokenSampler, ShardedRowsAgreeWithTheWholeRow) {
  // Two shards sampled with a layout-only communicator see only their own columns; the
  // Gumbel noise depends on the global id, so each shard's local winner must match the
  // whole row's winner when that winner lies in the shard.
  auto be = make_cpu_backend(1);
  auto tp = make_self_communicator("tp");
  const int64_t V = 64;
  std::vector<float> row(V);
  std::mt19937 rng(3);
  for (auto& x : row) x = std::normal_distribution<float>(0, 2)(rng);
  TokenSampler whole(*be, *tp, 0, V, V);
  Tensor all = logits_tensor(*be, {row}, V);
  for (int64_t step = 0; step < 50; ++step) {
    SamplingParams p{0.7f, 0, 1.0f, 9, step};
    const int32_t w = whole.sample(all, {p})[0];
    const int64_t half = w < V / 2 ? 0 : V / 2;
    TokenSampler shard(*be, *tp, half, V / 2, V);
    std::vector<float> part(row.begin() + half, row.begin() + half + V / 2);
    EXPECT_EQ(shard.sample(logits_tensor(*be, {part}, V / 2), {p})[0], w) << "step " << step;
  }
}

}  // namespace
}  // namespace tandem
