// Tensor-level KV-cache attention: shape, dtype and device checks, then the CPU or CUDA
// implementation. The metadata VALUES (slots, block ids, q_start, ctx_len) live on the
// backend's device; the CPU reference validates them (kernels/cpu/kv_attention.cpp), the
// CUDA version trusts them (the serving engine builds them).
#include "kernels/kv_attention.h"

#include <limits>

#include "kernels/dispatch.h"

namespace tandem::kernels {

namespace {

void check_dtype(const Tensor& t, DType want, const char* what) {
  TANDEM_CHECK(t.dtype() == want, "{} must be {}, got {}", what, dtype_name(want), t.describe());
}

// Checks qkv [N, 3*H*D] and a cache pair [num_blocks, block_tokens, H*D]; the sizes they fix.
KvAttentionShape cache_dims(Backend& be, const Tensor& qkv, const Tensor& k_cache,
                            const Tensor& v_cache, int64_t heads, const char* what) {
  check_device(be, qkv, "kv qkv");
  check_device(be, k_cache, "kv k_cache");
  check_device(be, v_cache, "kv v_cache");
  check_dtype(qkv, DType::F32, "kv qkv");
  check_dtype(k_cache, DType::F32, "kv k_cache");
  check_dtype(v_cache, DType::F32, "kv v_cache");
  TANDEM_CHECK(qkv.ndim() == 2, "{}: qkv must be [N, 3*H*D], got {}", what, qkv.describe());
  TANDEM_CHECK(heads > 0 && qkv.dim(1) % (3 * heads) == 0 && qkv.dim(1) > 0,
               "{}: qkv width {} is not 3 * heads({}) * head_dim", what, qkv.dim(1), heads);
  KvAttentionShape sh;
  sh.N = qkv.dim(0);
  sh.H = heads;
  sh.D = qkv.dim(1) / (3 * heads);
  TANDEM_CHECK(k_cache.ndim() == 3 && k_cache.dim(2) == sh.H * sh.D,
               "{}: k_cache must be [num_blocks, block_tokens, H*D = {}], got {}", what,
               sh.H * sh.D, k_cache.describe());
  check_shape(v_cache, k_cache.shape(), "kv v_cache (as k_cache)");
  sh.num_blocks = k_cache.dim(0);
  sh.block_tokens = k_cache.dim(1);
  TANDEM_CHECK(sh.block_tokens > 0 &&
                   sh.num_blocks * sh.block_tokens <= std::numeric_limits<int32_t>::max() &&
                   sh.N <= std::numeric_limits<int32_t>::max(),
               "{}: num_blocks {} x block_tokens {} slots (and N {}) must fit int32", what,
               sh.num_blocks, sh.block_tokens, sh.N);
  return sh;
}

void check_meta(Backend& be, const Tensor& t, const Shape& shape, const char* what) {
  check_device(be, t, what);
  check_dtype(t, DType::I32, what);
  check_shape(t, shape, what);
}

}  // namespace

void kv_cache_write(Backend& be, Tensor& k_cache, Tensor& v_cache, const Tensor& qkv,
                    const Tensor& slots, int64_t heads) {
  const KvAttentionShape sh = cache_dims(be, qkv, k_cache, v_cache, heads, "kv_cache_write");
  check_meta(be, slots, {sh.N}, "kv_cache_write slots");
  if (on_cpu(be))
    cpu::kv_cache_write(k_cache.f32(), v_cache.f32(), qkv.f32(), slots.i32(), sh);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::kv_cache_write(TANDEM_CUDA_CTX(be), k_cache.f32(),
                                                  v_cache.f32(), qkv.f32(), slots.i32(), sh));
}

void kv_attention_forward(Backend& be, Tensor& out, const Tensor& qkv, const Tensor& k_cache,
                          const Tensor& v_cache, const Tensor& block_table, const Tensor& q_start,
                          const Tensor& ctx_len, int64_t heads) {
  KvAttentionShape sh = cache_dims(be, qkv, k_cache, v_cache, heads, "kv_attention_forward");
  check_device(be, out, "kv_attention out");
  check_dtype(out, DType::F32, "kv_attention out");
  check_shape(out, {sh.N, sh.H * sh.D}, "kv_attention out");
  TANDEM_CHECK(block_table.ndim() == 2,
               "kv_attention_forward: block_table must be [S, max_blocks], got {}",
               block_table.describe());
  sh.S = block_table.dim(0);
  sh.max_blocks = block_table.dim(1);
  check_meta(be, block_table, {sh.S, sh.max_blocks}, "kv_attention block_table");
  check_meta(be, q_start, {sh.S + 1}, "kv_attention q_start");
  check_meta(be, ctx_len, {sh.S}, "kv_attention ctx_len");
  if (on_cpu(be))
    cpu::kv_attention_forward(out.f32(), qkv.f32(), k_cache.f32(), v_cache.f32(),
                              block_table.i32(), q_start.i32(), ctx_len.i32(), sh);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::kv_attention_forward(
                                 TANDEM_CUDA_CTX(be), out.f32(), qkv.f32(), k_cache.f32(),
                                 v_cache.f32(), block_table.i32(), q_start.i32(), ctx_len.i32(),
                                 sh));
}

}  // namespace tandem::kernels
