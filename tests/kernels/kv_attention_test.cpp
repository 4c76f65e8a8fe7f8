// Tests for kernels/kv_attention.h on the CPU backend: the paged cache written by
// kv_cache_write and read by kv_attention_forward through shuffled, non-contiguous block
// tables gives the dense causal attention (kernels::cpu::attention_forward over each whole
// sequence) for the new tokens' rows; decoding one token at a time reproduces the
// prefill-at-once result; slot -1 rows are skipped; bad shapes and metadata throw with the
// sizes in the message.
#include "kernels/kv_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

Tensor i32_tensor(Backend& be, const std::vector<int32_t>& v, Shape shape) {
  Tensor t = be.empty(std::move(shape), DType::I32);
  std::copy(v.begin(), v.end(), t.i32());
  return t;
}

// A paged cache for S sequences: every sequence gets its blocks from one shuffled pool, so
// the blocks of a sequence are neither contiguous nor in order.
struct PagedCache {
  int64_t H, D, bt, max_blocks, num_blocks;
  Tensor k, v;
  std::vector<std::vector<int32_t>> blocks;  // per sequence, max_blocks entries (-1 unused)

  PagedCache(Backend& be, int64_t H_, int64_t D_, int64_t bt_, const std::vector<int64_t>& cap,
             uint32_t seed)
      : H(H_), D(D_), bt(bt_) {
    max_blocks = 0;
    int64_t need = 0;
    for (int64_t c : cap) {
      max_blocks = std::max(max_blocks, (c + bt - 1) / bt);
      need += (c + bt - 1) / bt;
    }
    num_blocks = need + 3;  // a few blocks nobody uses
    std::vector<int32_t> pool(num_blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(pool.begin(), pool.end(), rng);
    size_t next = 0;
    for (int64_t c : cap) {
      std::vector<int32_t> row(max_blocks, -1);
      for (int64_t b = 0; b < (c + bt - 1) / bt; ++b) row[b] = pool[next++];
      blocks.push_back(row);
    }
    // NaN everywhere: a read of an unwritten row would show in the output.
    k = be.empty({num_blocks, bt, H * D});
    v = be.empty({num_blocks, bt, H * D});
    std::fill(k.f32(), k.f32() + k.numel(), std::numeric_limits<float>::quiet_NaN());
    std::fill(v.f32(), v.f32() + v.numel(), std::numeric_limits<float>::quiet_NaN());
  }
  int32_t slot(size_t s, int64_t pos) const {
    return static_cast<int32_t>(blocks[s][pos / bt] * bt + pos % bt);
  }
  Tensor table(Backend& be) const {
    std::vector<int32_t> flat;
    for (const auto& r : blocks) flat.insert(flat.end(), r.begin(), r.end());
    return i32_tensor(be, flat, {static_cast<int64_t>(blocks.size()), max_blocks});
  }
};

// One step: sequence s appends positions [from[s], to[s]) of its full qkv rows `full[s]`
// ([T_s, 3HD]); writes them into the cache, runs the attention, returns out [N, HD].
Tensor run_step(Backend& be, PagedCache& pc, const std::vector<Tensor>& full,
                const std::vector<int64_t>& from, const std::vector<int64_t>& to) {
  const int64_t S = static_cast<int64_t>(full.size()), C3 = 3 * pc.H * pc.D;
  std::vector<int32_t> q_start{0}, ctx, slots;
  for (int64_t s = 0; s < S; ++s) {
    q_start.push_back(q_start.back() + static_cast<int32_t>(to[s] - from[s]));
    ctx.push_back(static_cast<int32_t>(to[s]));
    for (int64_t p = from[s]; p < to[s]; ++p) slots.push_back(pc.slot(s, p));
  }
  const int64_t N = q_start.back();
  Tensor qkv = be.empty({N, C3});
  int64_t r = 0;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t p = from[s]; p < to[s]; ++p, ++r)
      std::copy(full[s].f32() + p * C3, full[s].f32() + (p + 1) * C3, qkv.f32() + r * C3);
  Tensor slot_t = i32_tensor(be, slots, {N});
  kv_cache_write(be, pc.k, pc.v, qkv, slot_t, pc.H);
  Tensor out = be.empty({N, pc.H * pc.D});
  Tensor table = pc.table(be), qs = i32_tensor(be, q_start, {S + 1}), cl = i32_tensor(be, ctx, {S});
  kv_attention_forward(be, out, qkv, pc.k, pc.v, table, qs, cl, pc.H);
  return out;
}

// Dense causal attention over each whole sequence: out_s [T_s, HD].
std::vector<Tensor> dense(Backend& be, const std::vector<Tensor>& full, int64_t H, int64_t D) {
  std::vector<Tensor> outs;
  for (const Tensor& q : full) {
    const int64_t T = q.dim(0);
    Tensor out = be.empty({T, H * D}), lse = be.empty({H, T});
    cpu::attention_forward(out.f32(), lse.f32(), nullptr, q.f32(), 1, T, H, D);
    outs.push_back(out);
  }
  return outs;
}

struct Seq {
  int64_t past, fresh;  // cached tokens before the step, new tokens in it
};

// fp32 on both sides, different summation order (groups of keys, online softmax): atol 1e-5,
// rtol 1e-5 for values of scale ~1.
TEST(KvAttention, PagedCacheMatchesDenseCausal) {
  auto be = make_cpu_backend(2);
  struct Case {
    int64_t H, D, bt;
    std::vector<Seq> seqs;
  };
  const std::vector<Case> cases = {
      // decode (1 new), a prefill from empty, prefill chunks over a filled cache, one sequence
      // without new tokens; block sizes 16 and 5 (a block boundary inside every group)
      {3, 64, 16, {{99, 1}, {0, 37}, {50, 13}, {200, 70}, {20, 0}, {3, 2}}},
      {2, 20, 5, {{0, 1}, {17, 1}, {8, 40}, {64, 5}}},
      {12, 64, 16, {{511, 1}, {63, 1}, {0, 130}}},
      {1, 7, 1, {{9, 3}, {0, 4}}},
      {2, 128, 5, {{33, 9}}},
  };
  uint32_t seed = 1;
  for (const Case& c : cases) {
    std::vector<Tensor> full;
    std::vector<int64_t> cap, from, to;
    for (const Seq& s : c.seqs) {
      const int64_t T = s.past + s.fresh;
      full.push_back(random_tensor(*be, {std::max<int64_t>(T, 1), 3 * c.H * c.D}, seed++, -1.5f,
                                   1.5f));
      cap.push_back(T);
      from.push_back(s.past);
      to.push_back(T);
    }
    PagedCache pc(*be, c.H, c.D, c.bt, cap, seed++);
    // The earlier tokens were written by previous steps (their outputs are not checked here).
    const std::vector<int64_t> zero(c.seqs.size(), 0);
    run_step(*be, pc, full, zero, from);
    const Tensor out = run_step(*be, pc, full, from, to);
    std::vector<Tensor> want_full;
    for (size_t s = 0; s < full.size(); ++s)
      want_full.push_back(full[s].rows(0, std::max<int64_t>(to[s], 1)));
    const std::vector<Tensor> want = dense(*be, want_full, c.H, c.D);
    int64_t r = 0;
    for (size_t s = 0; s < c.seqs.size(); ++s) {
      const int64_t n = c.seqs[s].fresh, HD = c.H * c.D;
      if (n == 0) continue;
      const std::string msg = "H " + std::to_string(c.H) + " D " + std::to_string(c.D) +
                              " block_tokens " + std::to_string(c.bt) + " sequence " +
                              std::to_string(s) + " past " + std::to_string(c.seqs[s].past) +
                              " new " + std::to_string(n);
      std::vector<double> ref(want[s].f32() + from[s] * HD, want[s].f32() + to[s] * HD);
      TANDEM_EXPECT_CLOSE(out.f32() + r * HD, ref.data(), n * HD, 1e-5, 1e-5, msg);
      r += n;
    }
  }
}

// Two sequences, decoded one token per step (both in each step) after a 1-token prompt,
// against one prefill of the whole sequences: the per-query arithmetic is the same in the
// single-query and the 4-query tiles (extra masked keys add exact zeros), so bit-equal.
TEST(KvAttention, DecodeStepsReproducePrefill) {
  auto be = make_cpu_backend(2);
  const int64_t H = 3, D = 32, bt = 16, T = 45;
  std::vector<Tensor> full = {random_tensor(*be, {T, 3 * H * D}, 5, -2.f, 2.f),
                              random_tensor(*be, {T, 3 * H * D}, 6, -2.f, 2.f)};
  PagedCache once(*be, H, D, bt, {T, T}, 7);
  const Tensor pre = run_step(*be, once, full, {0, 0}, {T, T});  // rows: seq 0, then seq 1
  PagedCache steps(*be, H, D, bt, {T, T}, 8);
  for (int64_t p = 0; p < T; ++p) {
    const Tensor out = run_step(*be, steps, full, {p, p}, {p + 1, p + 1});
    for (int64_t s = 0; s < 2; ++s) {
      const float* want = pre.f32() + (s * T + p) * H * D;
      const std::vector<float> got(out.f32() + s * H * D, out.f32() + (s + 1) * H * D);
      EXPECT_EQ(got, std::vector<float>(want, want + H * D)) << "sequence " << s << " pos " << p;
    }
  }
}

TEST(KvAttention, NegativeSlotsAreSkipped) {
  auto be = make_cpu_backend(2);
  const int64_t H = 2, D = 8, HD = H * D, nb = 3, bt = 4, N = 5;
  Tensor qkv = random_tensor(*be, {N, 3 * HD}, 9);
  Tensor k = be->empty({nb, bt, HD}), v = be->empty({nb, bt, HD});
  std::fill(k.f32(), k.f32() + k.numel(), -7.f);
  std::fill(v.f32(), v.f32() + v.numel(), -8.f);
  const std::vector<int32_t> slots = {11, -1, 0, -1, 6};
  kv_cache_write(*be, k, v, qkv, i32_tensor(*be, slots, {N}), H);
  std::vector<bool> written(nb * bt, false);
  for (int64_t i = 0; i < N; ++i) {
    if (slots[i] < 0) continue;
    written[slots[i]] = true;
    for (int64_t d = 0; d < HD; ++d) {
      EXPECT_EQ(k.f32()[slots[i] * HD + d], qkv.f32()[i * 3 * HD + HD + d]) << i;
      EXPECT_EQ(v.f32()[slots[i] * HD + d], qkv.f32()[i * 3 * HD + 2 * HD + d]) << i;
    }
  }
  for (int64_t sl = 0; sl < nb * bt; ++sl)
    if (!written[sl])
      for (int64_t d = 0; d < HD; ++d) {
        EXPECT_EQ(k.f32()[sl * HD + d], -7.f) << "slot " << sl;
        EXPECT_EQ(v.f32()[sl * HD + d], -8.f) << "slot " << sl;
      }
}

// Runs fn, expects a tandem::Error whose message contains every one of `parts`.
template <class Fn>
void expect_error(Fn fn, const std::vector<std::string>& parts, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << what << ": no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << what << ": '" << p << "' not in: " << msg;
  }
}

TEST(KvAttention, BadShapesAndMetadataThrowWithSizes) {
  auto be = make_cpu_backend(1);
  const int64_t H = 2, D = 8, HD = H * D, nb = 4, bt = 4, N = 3, S = 2;
  Tensor qkv = random_tensor(*be, {N, 3 * HD}, 3);
  Tensor k = be->zeros({nb, bt, HD}), v = be->zeros({nb, bt, HD});
  Tensor out = be->empty({N, HD});
  Tensor table = i32_tensor(*be, {0, 1, 2, 3}, {S, 2});
  Tensor qs = i32_tensor(*be, {0, 1, 3}, {S + 1}), cl = i32_tensor(*be, {5, 2}, {S});
  Tensor slots = i32_tensor(*be, {0, 1, 2}, {N});
  kv_attention_forward(*be, out, qkv, k, v, table, qs, cl, H);  // valid as given

  Tensor bad_qkv = random_tensor(*be, {N, 3 * HD + 3}, 3);
  expect_error([&] { kv_cache_write(*be, k, v, bad_qkv, slots, H); }, {"51", "heads(2)"},
               "qkv width");
  Tensor bad_k = be->zeros({nb, bt, HD + 1});
  expect_error([&] { kv_cache_write(*be, bad_k, v, qkv, slots, H); }, {"[4, 4, 17]", "16"},
               "k_cache width");
  Tensor bad_v = be->zeros({nb, bt + 1, HD});
  expect_error([&] { kv_attention_forward(*be, out, qkv, k, bad_v, table, qs, cl, H); },
               {"[4, 5, 16]", "[4, 4, 16]"}, "v_cache shape");
  Tensor bad_slots = i32_tensor(*be, {0, 1}, {2});
  expect_error([&] { kv_cache_write(*be, k, v, qkv, bad_slots, H); }, {"[2]", "[3]"},
               "slots length");
  Tensor f32_slots = be->zeros({N});
  expect_error([&] { kv_cache_write(*be, k, v, qkv, f32_slots, H); }, {"i32", "f32"},
               "slots dtype");
  Tensor bad_out = be->empty({N, HD + 2});
  expect_error([&] { kv_attention_forward(*be, bad_out, qkv, k, v, table, qs, cl, H); },
               {"[3, 18]", "[3, 16]"}, "out shape");
  Tensor bad_qs = i32_tensor(*be, {0, 3}, {2});
  expect_error([&] { kv_attention_forward(*be, out, qkv, k, v, table, bad_qs, cl, H); },
               {"[2]", "[3]"}, "q_start length");
  Tensor bad_cl = i32_tensor(*be, {5, 1}, {S});  // 2 new tokens, ctx 1
  expect_error([&] { kv_attention_forward(*be, out, qkv, k, v, table, qs, bad_cl, H); },
               {"sequence 1", "2 new tokens", "ctx_len 1"}, "ctx_len < new tokens");
  Tensor long_cl = i32_tensor(*be, {9, 2}, {S});  // capacity 2 x 4
  expect_error([&] { kv_attention_forward(*be, out, qkv, k, v, table, qs, long_cl, H); },
               {"ctx_len 9", "capacity 8"}, "ctx_len > capacity");
  Tensor bad_table = i32_tensor(*be, {0, 7, 2, 3}, {S, 2});
  expect_error([&] { kv_attention_forward(*be, out, qkv, k, v, bad_table, qs, cl, H); },
               {"block_table[0][1] = 7", "[0, 4)"}, "block id");
  Tensor short_qs = i32_tensor(*be, {0, 1, 2}, {S + 1});
  expect_error([&] { kv_attention_forward(*be, out, qkv, k, v, table, short_qs, cl, H); },
               {"q_start[S=2] = 2", "N = 3"}, "q_start end");
  Tensor far_slots = i32_tensor(*be, {0, 16, 2}, {N});
  expect_error([&] { kv_cache_write(*be, k, v, qkv, far_slots, H); },
               {"slots[1] = 16", "num_blocks 4"}, "slot range");
}

}  // namespace
}  // namespace tandem::kernels
