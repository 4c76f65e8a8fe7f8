// CUDA paged KV-cache write and attention of the new tokens over the cache (fp32).
//
// Contract: kernels/kv_attention.h (same math as kernels/cpu/kv_attention.cpp). The metadata
// lives on the device and is trusted, except that the kernels never touch memory outside the
// cache: a slot outside [0, num_blocks * block_tokens) is skipped by kv_cache_write, and a
// cache position whose block id is outside [0, num_blocks) counts as masked (the CPU
// reference rejects both with an error instead). Head dims 1..128.
//
// kv_cache_write: one block per packed row (grid-stride), threads over the H*D columns.
// kv_attention:   one block of 4 warps per (chunk of kQB = 4 new tokens of one sequence, head);
//                 grid (ceil(N / kQB) + S, H), a block finds its chunk by walking q_start
//                 (blocks past the last chunk exit). The block's queries (pre-scaled by
//                 1/sqrt(D)) sit in shared memory; the cache positions 0 .. last query's
//                 position are cut into tiles of 32, dealt round-robin to the 4 warps (split-K,
//                 so a decode step with one query still keeps 4 warps streaming the cache):
//                   lane = key: the lane reads its key row (float4 when aligned) and computes
//                            its score against every query of the chunk;
//                   online softmax per query over the warp's tiles (m, per-lane partial l);
//                   lane = head-dim column: o[q][lane + 32k] += p_j v_j[lane + 32k], p_j and
//                            the row offset of key j broadcast by shuffles.
//                 The 4 warps' (m, l, o) are then merged in shared memory and written out.
//                 Decode chunks (1 query) run an instantiation with one query.
// No atomics: results are run-to-run identical.
#include "kernels/cuda/common.cuh"
#include "kernels/kv_attention.h"

#include <cmath>
#include <cstdint>
#include <limits>

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

constexpr int kQB = 4;                    // new tokens per block
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;  // 128
constexpr int kWriteThreads = 256;

__global__ void kv_cache_write_kernel(float* __restrict__ kc, float* __restrict__ vc,
                                      const float* __restrict__ qkv,
                                      const int32_t* __restrict__ slots, int N, int HD,
                                      int64_t nslots) {
  for (int i = blockIdx.x; i < N; i += gridDim.x) {
    const int32_t slot = slots[i];
    if (slot < 0 || slot >= nslots) continue;
    const float* src = qkv + static_cast<int64_t>(i) * 3 * HD;
    float* kd = kc + static_cast<int64_t>(slot) * HD;
    float* vd = vc + static_cast<int64_t>(slot) * HD;
    for (int d = threadIdx.x; d < HD; d += blockDim.x) {
      kd[d] = src[HD + d];
      vd[d] = src[2 * HD + d];
    }
  }
}

struct Params {
  float* out;
  const float* qkv;
  const float* kc;
  const float* vc;
  const int32_t* block_table;
  const int32_t* q_start;
  const int32_t* ctx_len;
  int S, H, D, bt, max_blocks, num_blocks;
  float scale;
  bool vec4;  // key rows 16-byte aligned and D % 4 == 0
};

// Shared memory of one block.
template <int DMAX>
struct Smem {
  float q[kQB][DMAX];
  float m[kWarps][kQB], l[kWarps][kQB];
  float o[kWarps][kQB][DMAX];
};

// The split-K pass of one warp over its tiles for NQ queries (positions p0 .. p0+NQ-1, nq
// of them real), leaving the warp's (m, l, o) in shared memory.
template <int DMAX, int NQ>
__device__ __forceinline__ void warp_pass(const Params& P, Smem<DMAX>& sm, const int32_t* bt_row,
                                          int h, int p0, int nq, int kend) {
  constexpr int DV = DMAX / kWarp;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t HD = static_cast<int64_t>(P.H) * P.D;
  float m[NQ], l[NQ], o[NQ][DV];
#pragma unroll
  for (int i = 0; i < NQ; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int k = 0; k < DV; ++k) o[i][k] = 0.f;
  }
  const int ntiles = (kend + kWarp - 1) / kWarp;
  for (int tile = warp; tile < ntiles; tile += kWarps) {
    const int k0 = tile * kWarp, key = k0 + lane;
    bool valid = key < kend;
    int64_t off = -1;  // -1: no row (past kend or a bad block id)
    if (valid) {
      const int32_t blk = bt_row[key / P.bt];
      valid = blk >= 0 && blk < P.num_blocks;
      if (valid)
        off = (static_cast<int64_t>(blk) * P.bt + key % P.bt) * HD + static_cast<int64_t>(h) * P.D;
    }
    float sc[NQ];
#pragma unroll
    for (int i = 0; i < NQ; ++i) sc[i] = 0.f;
    if (valid) {
      const float* kr = P.kc + off;
      if (P.vec4) {
        for (int d = 0; d < P.D; d += 4) {
          const float4 kv = *reinterpret_cast<const float4*>(kr + d);
#pragma unroll
          for (int i = 0; i < NQ; ++i)
            sc[i] += sm.q[i][d] * kv.x + sm.q[i][d + 1] * kv.y + sm.q[i][d + 2] * kv.z +
                     sm.q[i][d + 3] * kv.w;
        }
      } else {
        for (int d = 0; d < P.D; ++d) {
          const float kv = kr[d];
#pragma unroll
          for (int i = 0; i < NQ; ++i) sc[i] += sm.q[i][d] * kv;
        }
      }
    }
    float p[NQ];
#pragma unroll
    for (int i = 0; i < NQ; ++i) {
      const float s = (valid && i < nq && key <= p0 + i) ? sc[i] : -INFINITY;
      const float mt = warp_max(s);
      if (mt == -INFINITY) {  // no key of this tile for query i (uniform across the warp)
        p[i] = 0.f;
        continue;
      }
      const float mn = fmaxf(m[i], mt);
      const float corr = expf(m[i] - mn);  // 0 on the first tile (m = -inf)
      p[i] = expf(s - mn);
      l[i] = l[i] * corr + p[i];  // per-lane partial; corr is uniform across the warp
#pragma unroll
      for (int k = 0; k < DV; ++k) o[i][k] *= corr;
      m[i] = mn;
    }
    const int nvalid = min(kWarp, kend - k0);
    for (int j = 0; j < nvalid; ++j) {
      const int64_t offj = __shfl_sync(0xffffffffu, off, j);
      float vv[DV];
#pragma unroll
      for (int k = 0; k < DV; ++k) {
        const int d = lane + kWarp * k;
        vv[k] = (d < P.D && offj >= 0) ? P.vc[offj + d] : 0.f;
      }
#pragma unroll
      for (int i = 0; i < NQ; ++i) {
        const float pj = __shfl_sync(0xffffffffu, p[i], j);
#pragma unroll
        for (int k = 0; k < DV; ++k) o[i][k] = fmaf(pj, vv[k], o[i][k]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < NQ; ++i) {
    const float L = warp_sum(l[i]);
    if (lane == 0) {
      sm.m[warp][i] = m[i];
      sm.l[warp][i] = L;
    }
#pragma unroll
    for (int k = 0; k < DV; ++k) sm.o[warp][i][lane + kWarp * k] = o[i][k];
  }
}

template <int DMAX>
__global__ void __launch_bounds__(kThreads) kv_attn_kernel(Params P) {
  __shared__ Smem<DMAX> sm;
  // This block's chunk: the blockIdx.x-th of all sequences' ceil(n_s / kQB) chunks.
  int t = blockIdx.x, s = 0;
  for (; s < P.S; ++s) {
    const int nc = (P.q_start[s + 1] - P.q_start[s] + kQB - 1) / kQB;
    if (t < nc) break;
    t -= nc;
  }
  if (s >= P.S) return;  // uniform: past the last chunk
  const int h = blockIdx.y;
  const int n = P.q_start[s + 1] - P.q_start[s];
  const int j0 = t * kQB, nq = min(kQB, n - j0);
  const int row0 = P.q_start[s] + j0;
  const int p0 = P.ctx_len[s] - n + j0;  // position of the chunk's first query
  const int kend = p0 + nq;              // keys [0, kend)
  const int64_t HD = static_cast<int64_t>(P.H) * P.D;
  for (int idx = threadIdx.x; idx < kQB * DMAX; idx += kThreads) {
    const int i = idx / DMAX, d = idx % DMAX;
    sm.q[i][d] = (i < nq && d < P.D)
                     ? P.qkv[(static_cast<int64_t>(row0) + i) * 3 * HD + h * P.D + d] * P.scale
                     : 0.f;
  }
  __syncthreads();
  const int32_t* bt_row = P.block_table + static_cast<int64_t>(s) * P.max_blocks;
  if (nq == 1) warp_pass<DMAX, 1>(P, sm, bt_row, h, p0, nq, kend);
  else warp_pass<DMAX, kQB>(P, sm, bt_row, h, p0, nq, kend);
  __syncthreads();
  // Merge the warps' partial results: thread per (query, column).
  for (int idx = threadIdx.x; idx < nq * P.D; idx += kThreads) {
    const int i = idx / P.D, d = idx % P.D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm.m[w][i]);
    float L = 0.f, acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float c = expf(sm.m[w][i] - M);  // 0 for a warp that saw no key
      L += c * sm.l[w][i];
      acc += c * sm.o[w][i][d];
    }
    P.out[(static_cast<int64_t>(row0) + i) * HD + static_cast<int64_t>(h) * P.D + d] = acc / L;
  }
}

void check_int_range(const KvAttentionShape& sh) {
  constexpr int64_t kInt = std::numeric_limits<int32_t>::max();
  TANDEM_CHECK(sh.N <= kInt && sh.S <= kInt && 3 * sh.H * sh.D <= kInt && sh.H <= 65535 &&
                   sh.max_blocks <= kInt && sh.num_blocks * sh.block_tokens <= kInt &&
                   sh.N / kQB + sh.S < kInt,
               "cuda kv_attention sizes out of range: N {} S {} H {} D {} blocks {} x {}", sh.N,
               sh.S, sh.H, sh.D, sh.num_blocks, sh.block_tokens);
}

template <int DMAX>
void launch_attn(CudaContext& ctx, const Params& P, int64_t N) {
  const dim3 grid(static_cast<unsigned>((N + kQB - 1) / kQB + P.S), static_cast<unsigned>(P.H));
  kv_attn_kernel<DMAX><<<grid, kThreads, 0, ctx.stream>>>(P);
  TANDEM_LAUNCH_CHECK("kv_attn_kernel");
}

}  // namespace

void kv_cache_write(CudaContext& ctx, float* k_cache, float* v_cache, const float* qkv,
                    const int32_t* slots, const KvAttentionShape& sh) {
  check_int_range(sh);
  if (sh.N <= 0) return;
  const int HD = static_cast<int>(sh.H * sh.D);
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(sh.N, 65535));
  kv_cache_write_kernel<<<blocks, kWriteThreads, 0, ctx.stream>>>(
      k_cache, v_cache, qkv, slots, static_cast<int>(sh.N), HD, sh.num_blocks * sh.block_tokens);
  TANDEM_LAUNCH_CHECK("kv_cache_write_kernel");
}

void kv_attention_forward(CudaContext& ctx, float* out, const float* qkv, const float* k_cache,
                          const float* v_cache, const int32_t* block_table,
                          const int32_t* q_start, const int32_t* ctx_len,
                          const KvAttentionShape& sh) {
  TANDEM_CHECK(sh.D >= 1 && sh.D <= 128, "cuda kv_attention supports head dims 1..128, got {}",
               sh.D);
  TANDEM_CHECK(sh.block_tokens > 0, "cuda kv_attention: block_tokens {}", sh.block_tokens);
  check_int_range(sh);
  if (sh.N <= 0 || sh.S <= 0) return;
  Params P{out,
           qkv,
           k_cache,
           v_cache,
           block_table,
           q_start,
           ctx_len,
           static_cast<int>(sh.S),
           static_cast<int>(sh.H),
           static_cast<int>(sh.D),
           static_cast<int>(sh.block_tokens),
           static_cast<int>(sh.max_blocks),
           static_cast<int>(sh.num_blocks),
           1.0f / std::sqrt(static_cast<float>(sh.D)),
           false};
  P.vec4 = sh.D % 4 == 0 && reinterpret_cast<uintptr_t>(k_cache) % 16 == 0;
  if (sh.D <= 32) launch_attn<32>(ctx, P, sh.N);
  else if (sh.D <= 64) launch_attn<64>(ctx, P, sh.N);
  else launch_attn<128>(ctx, P, sh.N);
}

}  // namespace tandem::kernels::cuda
