// Kernel family: attention over a paged KV cache, for inference (prefill chunks and decode).
//
// The cache of one layer holds keys and values of many sequences in fixed-size blocks:
//   k_cache, v_cache [num_blocks, block_tokens, H*D]   (H = heads held here, D = head dim)
// Token position p of a sequence lives in block block_table[s][p / block_tokens] at row
// p % block_tokens. A step packs the NEW tokens of S sequences into N rows (sequence s owns rows
// q_start[s] .. q_start[s+1]-1, in position order).
//
// Contract:
//   kv_cache_write:  for each packed row i, copies the key and value parts of qkv[i] (layout as
//                    in kernels/attention.h: [q heads | k heads | v heads], 3*H*D columns) into
//                    cache slot slots[i] = block * block_tokens + row (slots[i] < 0: skipped).
//   kv_attention_forward: for sequence s with ctx_len[s] cached tokens (INCLUDING its new ones,
//                    already written) and n_s = q_start[s+1] - q_start[s] new tokens, the query
//                    of new token j sits at position ctx_len[s] - n_s + j and attends to cache
//                    positions 0 .. that position (causal within the new tokens):
//                      out[q_start[s] + j] = softmax(q k^T / sqrt(D)) v      per head
//                    out [N, H*D]; queries are read from qkv [N, 3*H*D].
//   Metadata tensors are int32 on the backend's device: block_table [S, max_blocks],
//   q_start [S + 1], ctx_len [S], slots [N]. Sizes are checked once in kernels/kv_attention.cpp.
// CPU: one pass per (sequence, head, query) with an online softmax over cache rows, parallel
// over (sequence, head); fp32 throughout. CUDA: kernels/cuda/kv_attention.cu (same math).
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void kv_cache_write(Backend& be, Tensor& k_cache, Tensor& v_cache, const Tensor& qkv,
                    const Tensor& slots, int64_t heads);
void kv_attention_forward(Backend& be, Tensor& out, const Tensor& qkv, const Tensor& k_cache,
                          const Tensor& v_cache, const Tensor& block_table, const Tensor& q_start,
                          const Tensor& ctx_len, int64_t heads);

// Plain-pointer forms. HD = H*D; block_tokens = rows per block; max_blocks = block_table row
// length.
struct KvAttentionShape {
  int64_t N = 0, S = 0, H = 0, D = 0, block_tokens = 0, max_blocks = 0, num_blocks = 0;
};

namespace cpu {
void kv_cache_write(float* k_cache, float* v_cache, const float* qkv, const int32_t* slots,
                    const KvAttentionShape& sh);
void kv_attention_forward(float* out, const float* qkv, const float* k_cache,
                          const float* v_cache, const int32_t* block_table,
                          const int32_t* q_start, const int32_t* ctx_len,
                          const KvAttentionShape& sh);
}  // namespace cpu

namespace cuda {
void kv_cache_write(CudaContext& ctx, float* k_cache, float* v_cache, const float* qkv,
                    const int32_t* slots, const KvAttentionShape& sh);
void kv_attention_forward(CudaContext& ctx, float* out, const float* qkv, const float* k_cache,
                          const float* v_cache, const int32_t* block_table,
                          const int32_t* q_start, const int32_t* ctx_len,
                          const KvAttentionShape& sh);
}  // namespace cuda

}  // namespace tandem::kernels
