// Engine step (de)serialization (contract in step_wire.h).
#include "serve/step_wire.h"

#include <cstring>

#include "runtime/core/error.h"

namespace tandem::serve {

namespace {

constexpr int32_t kMagic = 0x54535450;  // "TSTP"
constexpr int kHeader = 9;               // magic, command, N, S, max_blocks, R, table size, _, _
constexpr int kSamplingInts = 7;         // temperature, top_k, top_p, seed lo/hi, step lo/hi

int32_t bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i;
}
float unbits(int32_t i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

}  // namespace

std::vector<int32_t> encode_step(const StepMessage& m) {
  const InferBatch& b = m.batch;
  TANDEM_CHECK(m.sampling.size() == b.logit_rows.size(), "step: {} sampling entries for {} logit rows",
               m.sampling.size(), b.logit_rows.size());
  std::vector<int32_t> w = {kMagic,
                            static_cast<int32_t>(m.command),
                            static_cast<int32_t>(b.num_tokens()),
                            static_cast<int32_t>(b.num_seqs()),
                            b.max_blocks,
                            static_cast<int32_t>(b.logit_rows.size()),
                            static_cast<int32_t>(b.block_table.size()),
                            0,
                            0};
  auto put = [&](const std::vector<int32_t>& v) { w.insert(w.end(), v.begin(), v.end()); };
  put(b.tokens);
  put(b.positions);
  put(b.slots);
  put(b.q_start);
  put(b.ctx_len);
  put(b.block_table);
  put(b.logit_rows);
  for (const SamplingParams& p : m.sampling) {
    const auto seed = static_cast<uint64_t>(p.seed);
    const auto step = static_cast<uint64_t>(p.step);
    w.insert(w.end(), {bits(p.temperature), p.top_k, bits(p.top_p),
                       static_cast<int32_t>(seed & 0xffffffffu), static_cast<int32_t>(seed >> 32),
                       static_cast<int32_t>(step & 0xffffffffu), static_cast<int32_t>(step >> 32)});
  }
  return w;
}

StepMessage decode_step(const std::vector<int32_t>& w) {
  TANDEM_CHECK(w.size() >= kHeader && w[0] == kMagic, "step message: {} ints, magic {:#x}", w.size(),
               w.empty() ? 0 : w[0]);
  TANDEM_CHECK(w[1] >= 0 && w[1] <= static_cast<int32_t>(StepCommand::Refresh),
               "step message: command {} outside [0, {}]", w[1], static_cast<int32_t>(StepCommand::Refresh));
  StepMessage m;
  m.command = static_cast<StepCommand>(w[1]);
  const int64_t N = w[2], S = w[3], R = w[5], table = w[6];
  const bool empty_batch = N == 0 && S == 0;
  const int64_t want = kHeader + 3 * N + (empty_batch ? 0 : S + 1) + S + table + R + R * kSamplingInts;
  TANDEM_CHECK(N >= 0 && S >= 0 && R >= 0 && table == S * w[4] &&
                   static_cast<int64_t>(w.size()) == want,
               "step message: {} ints for N {} S {} max_blocks {} R {} table {} (want {})", w.size(), N,
               S, w[4], R, table, want);
  size_t at = kHeader;
  auto take = [&](int64_t n) {
    std::vector<int32_t> v(w.begin() + static_cast<int64_t>(at), w.begin() + static_cast<int64_t>(at) + n);
    at += static_cast<size_t>(n);
    return v;
  };
  InferBatch& b = m.batch;
  b.tokens = take(N);
  b.positions = take(N);
  b.slots = take(N);
  b.q_start = take(empty_batch ? 0 : S + 1);
  b.ctx_len = take(S);
  b.block_table = take(table);
  b.max_blocks = w[4];
  b.logit_rows = take(R);
  for (int64_t r = 0; r < R; ++r) {
    const std::vector<int32_t> v = take(kSamplingInts);
    SamplingParams p;
    p.temperature = unbits(v[0]);
    p.top_k = v[1];
    p.top_p = unbits(v[2]);
    p.seed = static_cast<uint64_t>(static_cast<uint32_t>(v[3])) | (static_cast<uint64_t>(static_cast<uint32_t>(v[4])) << 32);
    p.step = static_cast<int64_t>(static_cast<uint64_t>(static_cast<uint32_t>(v[5])) |
                                  (static_cast<uint64_t>(static_cast<uint32_t>(v[6])) << 32));
    m.sampling.push_back(p);
  }
  return m;
}

}  // namespace tandem::serve
