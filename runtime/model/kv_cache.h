// KvCache and InferBatch: the state and the per-step plan of cached (incremental) inference.
//
// KvCache holds, for every local layer of one model chunk, a key and a value pool of
// num_blocks blocks of block_tokens rows, each row H_local * D wide (kernels/kv_attention.h).
// It is reserved once and never grows; which blocks belong to which sequence is decided above
// (serve/kv_block_pool.h) and arrives in each step's InferBatch as block tables.
//
// InferBatch: the NEW tokens of S sequences in one forward step, packed in sequence order.
// Every rank of a model replica receives the same batch (the serving leader broadcasts it),
// so every rank issues the same collectives. Prefill chunks and decode tokens mix freely: a
// sequence contributes 1 (decode) or several (prefill chunk) consecutive positions.
//
// Contract: validate() checks every index against the cache and model sizes and throws naming
// the values; upload() copies the metadata to the backend once per step (every layer reuses it).
// Not thread-safe: the rank's compute thread owns both.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/core/backend.h"

namespace tandem {

struct InferBatch {
  std::vector<int32_t> tokens;       // [N] token ids (read by the embedding stage)
  std::vector<int32_t> positions;    // [N] position of each new token in its sequence
  std::vector<int32_t> slots;        // [N] cache slot = block * block_tokens + row
  std::vector<int32_t> q_start;      // [S + 1] packed row offsets of each sequence
  std::vector<int32_t> ctx_len;      // [S] tokens cached after this step (old + new)
  std::vector<int32_t> block_table;  // [S * max_blocks] block ids (unused entries: 0)
  int32_t max_blocks = 0;
  std::vector<int32_t> logit_rows;   // packed rows whose next-token logits are wanted

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_seqs() const { return static_cast<int64_t>(ctx_len.size()); }
  // Fills positions/slots/q_start/ctx_len/block_table for one sequence appended to the batch:
  // new tokens `ids` at positions past .. past + n - 1, its blocks `blocks` (enough for
  // past + n tokens); want_logits asks for the last new token's logits.
  void add_sequence(const std::vector<int32_t>& ids, int32_t past,
                    const std::vector<int32_t>& blocks, int32_t block_tokens, bool want_logits);
  void validate(int64_t num_blocks, int64_t block_tokens, int64_t seq_len, int64_t vocab) const;
};

// The batch metadata on the backend's device (int32 tensors), shared by every layer.
struct InferBatchDevice {
  Tensor tokens, positions, slots, q_start, ctx_len, block_table;
  int64_t N = 0, S = 0;
};

// Rows [0, n) of a fresh f32 tensor of [ceil64(n), cols] rows (cols == 0: a vector of n).
// Step-sized buffers of cached inference come in a bounded set of sizes (multiples of 64 rows)
// however the batch varies from step to step, so the caching allocator keeps only a few.
Tensor step_rows(Backend& be, int64_t n, int64_t cols, DType dtype = DType::F32);

class KvCache {
 public:
  // width = local heads * head dim. Zero-filled so unused slots never hold NaNs.
  KvCache(Backend& be, int layers, int64_t num_blocks, int64_t block_tokens, int64_t width);
  Tensor& keys(int layer);
  Tensor& values(int layer);
  int layers() const { return static_cast<int>(k_.size()); }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_tokens() const { return block_tokens_; }
  size_t bytes() const;
  InferBatchDevice upload(const InferBatch& batch);

 private:
  Backend& be_;
  int64_t num_blocks_, block_tokens_;
  std::vector<Tensor> k_, v_;
};

}  // namespace tandem
