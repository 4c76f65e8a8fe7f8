// KvCache pools and InferBatch packing/validation (contract in kv_cache.h).
#include "runtime/model/kv_cache.h"

#include <algorithm>

#include "runtime/core/error.h"

namespace tandem {

namespace {

Tensor upload_ids(Backend& be, const std::vector<int32_t>& v) {
  const int64_t n = static_cast<int64_t>(v.size());
  Tensor dst = step_rows(be, n, 0, DType::I32);
  if (n == 0) return dst;
  Tensor src = Tensor::wrap(const_cast<int32_t*>(v.data()), DeviceKind::CPU, {n}, DType::I32);
  be.copy(dst, src);
  return dst;
}

}  // namespace

Tensor step_rows(Backend& be, int64_t n, int64_t cols, DType dtype) {
  const int64_t rows = std::max<int64_t>(64, (n + 63) / 64 * 64);
  if (cols == 0) return be.empty({rows}, dtype).rows(0, n);
  return be.empty({rows, cols}, dtype).rows(0, n);
}

void InferBatch::add_sequence(const std::vector<int32_t>& ids, int32_t past,
                              const std::vector<int32_t>& blocks, int32_t block_tokens,
                              bool want_logits) {
  TANDEM_CHECK(!ids.empty(), "add_sequence: no new tokens (past {})", past);
  TANDEM_CHECK(block_tokens >= 1, "add_sequence: block_tokens {}", block_tokens);
  const int32_t n = static_cast<int32_t>(ids.size());
  const int32_t need = (past + n + block_tokens - 1) / block_tokens;
  TANDEM_CHECK(static_cast<int32_t>(blocks.size()) >= need,
               "add_sequence: {} blocks hold fewer than past {} + new {} tokens of {} per block",
               blocks.size(), past, n, block_tokens);
  if (q_start.empty()) q_start.push_back(0);
  const int32_t row0 = q_start.back();
  for (int32_t j = 0; j < n; ++j) {
    const int32_t p = past + j;
    tokens.push_back(ids[j]);
    positions.push_back(p);
    slots.push_back(blocks[p / block_tokens] * block_tokens + p % block_tokens);
  }
  q_start.push_back(row0 + n);
  ctx_len.push_back(past + n);
  const int32_t nb = static_cast<int32_t>(blocks.size());
  if (nb > max_blocks) {  // widen every existing row of the table
    std::vector<int32_t> wide(static_cast<size_t>(ctx_len.size() - 1) * nb, 0);
    for (size_t s = 0; s + 1 < ctx_len.size(); ++s)
      std::copy_n(block_table.begin() + static_cast<int64_t>(s) * max_blocks, max_blocks,
                  wide.begin() + static_cast<int64_t>(s) * nb);
    block_table = std::move(wide);
    max_blocks = nb;
  }
  block_table.insert(block_table.end(), blocks.begin(), blocks.end());
  block_table.resize(ctx_len.size() * static_cast<size_t>(max_blocks), 0);
  if (want_logits) logit_rows.push_back(row0 + n - 1);
}

void InferBatch::validate(int64_t num_blocks, int64_t block_tokens, int64_t seq_len,
                          int64_t vocab) const {
  const int64_t N = num_tokens(), S = num_seqs();
  TANDEM_CHECK(positions.size() == tokens.size() && slots.size() == tokens.size(),
               "infer batch: {} tokens, {} positions, {} slots", N, positions.size(),
               slots.size());
  TANDEM_CHECK(static_cast<int64_t>(q_start.size()) == S + 1 && q_start.front() == 0 &&
                   q_start.back() == N,
               "infer batch: q_start has {} entries (want {}), ends at {} (want {})",
               q_start.size(), S + 1, q_start.empty() ? -1 : q_start.back(), N);
  TANDEM_CHECK(static_cast<int64_t>(block_table.size()) == S * max_blocks,
               "infer batch: block table {} entries for {} sequences x {} blocks",
               block_table.size(), S, max_blocks);
  for (int64_t s = 0; s < S; ++s) {
    const int32_t n = q_start[s + 1] - q_start[s];
    TANDEM_CHECK(n >= 1 && ctx_len[s] >= n && ctx_len[s] <= seq_len &&
                     ctx_len[s] <= max_blocks * block_tokens,
                 "infer batch: sequence {} has {} new of {} cached tokens (seq_len {}, {} blocks "
                 "of {})",
                 s, n, ctx_len[s], seq_len, max_blocks, block_tokens);
    const int64_t used = (ctx_len[s] + block_tokens - 1) / block_tokens;
    for (int64_t b = 0; b < used; ++b) {
      const int32_t id = block_table[s * max_blocks + b];
      TANDEM_CHECK(id >= 0 && id < num_blocks, "infer batch: sequence {} block {} is {} (pool {})",
                   s, b, id, num_blocks);
    }
  }
  for (int64_t i = 0; i < N; ++i) {
    TANDEM_CHECK(tokens[i] >= 0 && tokens[i] < vocab, "infer batch: token {} at row {} (vocab {})",
                 tokens[i], i, vocab);
    TANDEM_CHECK(slots[i] < num_blocks * block_tokens, "infer batch: slot {} at row {} (pool {})",
                 slots[i], i, num_blocks * block_tokens);
  }
  for (int32_t r : logit_rows)
    TANDEM_CHECK(r >= 0 && r < N, "infer batch: logit row {} of {}", r, N);
}

KvCache::KvCache(Backend& be, int layers, int64_t num_blocks, int64_t block_tokens,
                 int64_t width)
    : be_(be), num_blocks_(num_blocks), block_tokens_(block_tokens) {
  TANDEM_CHECK(layers >= 0 && num_blocks >= 1 && block_tokens >= 1 && width >= 1,
               "KV cache: {} layers, {} blocks of {} tokens, width {}", layers, num_blocks,
               block_tokens, width);
  for (int l = 0; l < layers; ++l) {
    k_.push_back(be.zeros({num_blocks, block_tokens, width}));
    v_.push_back(be.zeros({num_blocks, block_tokens, width}));
  }
}

Tensor& KvCache::keys(int layer) { return k_.at(static_cast<size_t>(layer)); }
Tensor& KvCache::values(int layer) { return v_.at(static_cast<size_t>(layer)); }

size_t KvCache::bytes() const {
  size_t b = 0;
  for (const Tensor& t : k_) b += t.nbytes();
  for (const Tensor& t : v_) b += t.nbytes();
  return b;
}

InferBatchDevice KvCache::upload(const InferBatch& batch) {
  InferBatchDevice d;
  d.N = batch.num_tokens();
  d.S = batch.num_seqs();
  d.tokens = upload_ids(be_, batch.tokens);
  d.positions = upload_ids(be_, batch.positions);
  d.slots = upload_ids(be_, batch.slots);
  d.q_start = upload_ids(be_, batch.q_start);
  d.ctx_len = upload_ids(be_, batch.ctx_len);
  d.block_table = upload_ids(be_, batch.block_table).view({d.S, batch.max_blocks});
  return d;
}

}  // namespace tandem
