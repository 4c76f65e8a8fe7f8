// CUDA causal multi-head attention core, forward and backward (fp32, flash-style tiles).
//
// Contract (kernels/attention.h): qkv [B, T, 3HD] (all q heads, then k heads, then v heads),
// out [B, T, HD], lse [B, H, T], optional probs [B, H, T, T] (row i: columns 0..i, rest 0),
// scale 1/sqrt(D). Backward overwrites dqkv.
//
// Tiling: 64 query rows x 64 key rows per tile, 256 threads (8 warps, each owning 8 rows of
// the tile; a lane owns the columns lane and lane+32 of the score tile and the head-dim
// columns lane + 32k of the accumulators). Head dims up to 128 are supported (templated on
// DMAX = 32 / 64 / 128 with zero padding in shared memory, so any D <= 128 works).
//   forward:   one block per (b, h, query tile); online softmax over key tiles 0..diagonal,
//              writes out and lse = m + log(l). When probs is requested, a second kernel
//              writes P = exp(s - lse) for every (i, j) (zeros above the diagonal).
//   backward:  Delta_i = dot(dO_i, O_i) (scratch), then two deterministic kernels that
//              recompute P from qkv and lse: dQ per query tile (dQ = scale dS K), and dK/dV
//              per key tile (dV = P^T dO, dK = scale dS^T Q), dS = P (dP - Delta), dP = dO V^T.
//              P is always recomputed (saved probs, when given, hold the same values; reading
//              the T x T matrix would cost more memory traffic than the recompute).
// No atomics: results are run-to-run identical.
#include "kernels/cuda/common.cuh"
#include "kernels/attention.h"

#include <cmath>

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

constexpr int kTile = 64;              // rows of a query tile and of a key tile
constexpr int kThreads = 256;          // 8 warps
constexpr int kRowsPerWarp = kTile / (kThreads / kWarp);  // 8

template <int DMAX>
struct Cfg {
  static constexpr int SD = DMAX + 4;  // shared row stride (floats): 16B aligned, conflict-free
  static constexpr int DV = DMAX / kWarp;
  static constexpr int kTileFloats = kTile * SD;
};

// s[r * SD + d] = base[(row0 + r) * stride + d] for rows < T and d < D, else 0 (r < 64,
// d < DMAX).
template <int DMAX>
__device__ __forceinline__ void load_tile(float* __restrict__ s, const float* __restrict__ base,
                                          int64_t stride, int row0, int T, int D) {
  for (int idx = threadIdx.x; idx < kTile * DMAX; idx += kThreads) {
    const int r = idx / DMAX, d = idx % DMAX;
    const int t = row0 + r;
    s[r * Cfg<DMAX>::SD + d] = (t < T && d < D) ? base[static_cast<int64_t>(t) * stride + d] : 0.f;
  }
}

// acc[r][c] = dot(sA[w*8 + r], sB[lane + 32c]) over d < 4*d4n (rows zero-padded).
template <int DMAX>
__device__ __forceinline__ void tile_dot(float (&acc)[kRowsPerWarp][2], const float* sA,
                                         const float* sB, int d4n, int warp, int lane) {
  constexpr int SD = Cfg<DMAX>::SD;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) acc[r][0] = acc[r][1] = 0.f;
  const float* a0 = sA + warp * kRowsPerWarp * SD;
  const float* b0p = sB + lane * SD;
  const float* b1p = sB + (lane + kWarp) * SD;
#pragma unroll 2
  for (int d4 = 0; d4 < d4n; ++d4) {
    const float4 b0 = *reinterpret_cast<const float4*>(b0p + 4 * d4);
    const float4 b1 = *reinterpret_cast<const float4*>(b1p + 4 * d4);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const float4 a = *reinterpret_cast<const float4*>(a0 + r * SD + 4 * d4);
      acc[r][0] = fmaf(a.x, b0.x, fmaf(a.y, b0.y, fmaf(a.z, b0.z, fmaf(a.w, b0.w, acc[r][0]))));
      acc[r][1] = fmaf(a.x, b1.x, fmaf(a.y, b1.y, fmaf(a.z, b1.z, fmaf(a.w, b1.w, acc[r][1]))));
    }
  }
}

// acc[r][k] += sum_j sW[(w*8 + r) * 64 + j] * sM[j * SD + lane + 32k] over j < 64.
template <int DMAX>
__device__ __forceinline__ void tile_accumulate(float (&acc)[kRowsPerWarp][Cfg<DMAX>::DV],
                                                const float* sW, const float* sM, int warp,
                                                int lane) {
  constexpr int SD = Cfg<DMAX>::SD, DV = Cfg<DMAX>::DV;
  const float* w0 = sW + warp * kRowsPerWarp * kTile;
#pragma unroll 2
  for (int j = 0; j < kTile; j += 4) {
    float m[4][DV];
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
#pragma unroll
      for (int k = 0; k < DV; ++k) m[jj][k] = sM[(j + jj) * SD + lane + kWarp * k];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const float4 p = *reinterpret_cast<const float4*>(w0 + r * kTile + j);
#pragma unroll
      for (int k = 0; k < DV; ++k) {
        float v = acc[r][k];
        v = fmaf(p.x, m[0][k], v);
        v = fmaf(p.y, m[1][k], v);
        v = fmaf(p.z, m[2][k], v);
        v = fmaf(p.w, m[3][k], v);
        acc[r][k] = v;
      }
    }
  }
}

// ------------------------------------------------------------------ forward

template <int DMAX>
__global__ void __launch_bounds__(kThreads, DMAX <= 64 ? 2 : 1)
    attn_forward_kernel(float* __restrict__ out, float* __restrict__ lse,
                        const float* __restrict__ qkv, int T, int H, int D, float scale) {
  using C = Cfg<DMAX>;
  extern __shared__ float4 smem4[];
  float* sQ = reinterpret_cast<float*>(smem4);
  float* sK = sQ + C::kTileFloats;
  float* sV = sK + C::kTileFloats;
  float* sP = sV + C::kTileFloats;  // [64][64]

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int qt = gridDim.y - 1 - blockIdx.y;  // heaviest (longest causal row) tiles first
  const int q0 = qt * kTile;
  const int64_t rs = 3LL * H * D;
  const float* qbase = qkv + static_cast<int64_t>(b) * T * rs + static_cast<int64_t>(h) * D;
  const float* kbase = qbase + static_cast<int64_t>(H) * D;
  const float* vbase = kbase + static_cast<int64_t>(H) * D;
  const int d4n = (D + 3) / 4;

  load_tile<DMAX>(sQ, qbase, rs, q0, T, D);

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][C::DV];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int k = 0; k < C::DV; ++k) o[r][k] = 0.f;
  }

  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();  // previous tile fully consumed
    load_tile<DMAX>(sK, kbase, rs, k0, T, D);
    load_tile<DMAX>(sV, vbase, rs, k0, T, D);
    __syncthreads();
    float s[kRowsPerWarp][2];
    tile_dot<DMAX>(s, sQ, sK, d4n, warp, lane);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = q0 + warp * kRowsPerWarp + r;
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int j = k0 + lane + kWarp * c;
        s[r][c] = (j <= i && j < T) ? s[r][c] * scale : -INFINITY;  // key 0 is always valid
      }
      const float mt = warp_max(fmaxf(s[r][0], s[r][1]));
      const float mn = fmaxf(m[r], mt);
      const float corr = expf(m[r] - mn);  // 0 on the first tile (m = -inf, mn finite)
      const float p0 = expf(s[r][0] - mn), p1 = expf(s[r][1] - mn);
      l[r] = l[r] * corr + p0 + p1;  // per-lane partial; corr is uniform across the warp
#pragma unroll
      for (int k = 0; k < C::DV; ++k) o[r][k] *= corr;
      m[r] = mn;
      float* prow = sP + (warp * kRowsPerWarp + r) * kTile;
      prow[lane] = p0;
      prow[lane + kWarp] = p1;
    }
    __syncwarp();
    tile_accumulate<DMAX>(o, sP, sV, warp, lane);
  }

  const int64_t ors = static_cast<int64_t>(H) * D;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const float L = warp_sum(l[r]);
    const int i = q0 + warp * kRowsPerWarp + r;
    if (i >= T) continue;
    const float inv = 1.0f / L;
    float* orow = out + (static_cast<int64_t>(b) * T + i) * ors + static_cast<int64_t>(h) * D;
#pragma unroll
    for (int k = 0; k < C::DV; ++k) {
      const int d = lane + kWarp * k;
      if (d < D) orow[d] = o[r][k] * inv;
    }
    if (lane == 0) lse[static_cast<int64_t>(bh) * T + i] = m[r] + logf(L);
  }
}

// probs[b, h, i, j] = exp(scale q_i.k_j - lse_i) for j <= i, else 0.
template <int DMAX>
__global__ void __launch_bounds__(kThreads, DMAX <= 64 ? 2 : 1)
    attn_probs_kernel(float* __restrict__ probs, const float* __restrict__ lse,
                      const float* __restrict__ qkv, int T, int H, int D, float scale) {
  using C = Cfg<DMAX>;
  extern __shared__ float4 smem4[];
  float* sQ = reinterpret_cast<float*>(smem4);
  float* sK = sQ + C::kTileFloats;

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int qt = blockIdx.y, q0 = qt * kTile;
  const int nt = (T + kTile - 1) / kTile;
  const int64_t rs = 3LL * H * D;
  const float* qbase = qkv + static_cast<int64_t>(b) * T * rs + static_cast<int64_t>(h) * D;
  const float* kbase = qbase + static_cast<int64_t>(H) * D;
  float* pbase = probs + static_cast<int64_t>(bh) * T * T;
  const int d4n = (D + 3) / 4;

  load_tile<DMAX>(sQ, qbase, rs, q0, T, D);
  float lr[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = q0 + warp * kRowsPerWarp + r;
    lr[r] = i < T ? lse[static_cast<int64_t>(bh) * T + i] : 0.f;
  }
  for (int kt = 0; kt < nt; ++kt) {
    const int k0 = kt * kTile;
    float s[kRowsPerWarp][2] = {};
    if (kt <= qt) {
      __syncthreads();
      load_tile<DMAX>(sK, kbase, rs, k0, T, D);
      __syncthreads();
      tile_dot<DMAX>(s, sQ, sK, d4n, warp, lane);
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = q0 + warp * kRowsPerWarp + r;
      if (i >= T) continue;
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int j = k0 + lane + kWarp * c;
        if (j >= T) continue;
        const float p = (kt <= qt && j <= i) ? expf(s[r][c] * scale - lr[r]) : 0.f;
        pbase[static_cast<int64_t>(i) * T + j] = p;
      }
    }
  }
}

// ------------------------------------------------------------------ backward

// delta[b, h, i] = dot(dout[b, i, h*D:(h+1)*D], out[b, i, h*D:(h+1)*D]); one warp per row.
__global__ void attn_delta_kernel(float* __restrict__ delta, const float* __restrict__ dout,
                                  const float* __restrict__ out, int B, int T, int H, int D) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = static_cast<int64_t>(B) * T * H;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t w = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
       w < rows; w += warps) {
    const int64_t bt = w / H;  // b * T + i
    const int h = static_cast<int>(w % H);
    const int64_t off = bt * H * D + static_cast<int64_t>(h) * D;
    float s = 0.f;
    for (int d = lane; d < D; d += kWarp) s += dout[off + d] * out[off + d];
    s = warp_sum(s);
    if (lane == 0) {
      const int64_t b = bt / T, i = bt % T;
      delta[(b * H + h) * T + i] = s;
    }
  }
}

template <int DMAX>
__global__ void __launch_bounds__(kThreads, 1)
    attn_backward_dq_kernel(float* __restrict__ dqkv, const float* __restrict__ dout,
                            const float* __restrict__ qkv, const float* __restrict__ lse,
                            const float* __restrict__ delta, int T, int H, int D, float scale) {
  using C = Cfg<DMAX>;
  extern __shared__ float4 smem4[];
  float* sQ = reinterpret_cast<float*>(smem4);
  float* sdO = sQ + C::kTileFloats;
  float* sK = sdO + C::kTileFloats;
  float* sV = sK + C::kTileFloats;
  float* sS = sV + C::kTileFloats;  // [64][64] dS

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int qt = gridDim.y - 1 - blockIdx.y;
  const int q0 = qt * kTile;
  const int64_t rs = 3LL * H * D, ors = static_cast<int64_t>(H) * D;
  const float* qbase = qkv + static_cast<int64_t>(b) * T * rs + static_cast<int64_t>(h) * D;
  const float* kbase = qbase + ors;
  const float* vbase = kbase + ors;
  const float* dobase = dout + static_cast<int64_t>(b) * T * ors + static_cast<int64_t>(h) * D;
  const int d4n = (D + 3) / 4;

  load_tile<DMAX>(sQ, qbase, rs, q0, T, D);
  load_tile<DMAX>(sdO, dobase, ors, q0, T, D);
  float lr[kRowsPerWarp], dr[kRowsPerWarp], dq[kRowsPerWarp][C::DV];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = q0 + warp * kRowsPerWarp + r;
    lr[r] = i < T ? lse[static_cast<int64_t>(bh) * T + i] : 0.f;
    dr[r] = i < T ? delta[static_cast<int64_t>(bh) * T + i] : 0.f;
#pragma unroll
    for (int k = 0; k < C::DV; ++k) dq[r][k] = 0.f;
  }

  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();
    load_tile<DMAX>(sK, kbase, rs, k0, T, D);
    load_tile<DMAX>(sV, vbase, rs, k0, T, D);
    __syncthreads();
    float s[kRowsPerWarp][2], dp[kRowsPerWarp][2];
    tile_dot<DMAX>(s, sQ, sK, d4n, warp, lane);
    tile_dot<DMAX>(dp, sdO, sV, d4n, warp, lane);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int i = q0 + warp * kRowsPerWarp + r;
      float* srow = sS + (warp * kRowsPerWarp + r) * kTile;
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int j = k0 + lane + kWarp * c;
        const float p = (i < T && j <= i) ? expf(s[r][c] * scale - lr[r]) : 0.f;
        srow[lane + kWarp * c] = p * (dp[r][c] - dr[r]);
      }
    }
    __syncwarp();
    tile_accumulate<DMAX>(dq, sS, sK, warp, lane);
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int i = q0 + warp * kRowsPerWarp + r;
    if (i >= T) continue;
    float* row = dqkv + (static_cast<int64_t>(b) * T + i) * rs + static_cast<int64_t>(h) * D;
#pragma unroll
    for (int k = 0; k < C::DV; ++k) {
      const int d = lane + kWarp * k;
      if (d < D) row[d] = dq[r][k] * scale;
    }
  }
}

template <int DMAX>
__global__ void __launch_bounds__(kThreads, 1)
    attn_backward_dkdv_kernel(float* __restrict__ dqkv, const float* __restrict__ dout,
                              const float* __restrict__ qkv, const float* __restrict__ lse,
                              const float* __restrict__ delta, int T, int H, int D, float scale) {
  using C = Cfg<DMAX>;
  extern __shared__ float4 smem4[];
  float* sK = reinterpret_cast<float*>(smem4);
  float* sV = sK + C::kTileFloats;
  float* sQ = sV + C::kTileFloats;
  float* sdO = sQ + C::kTileFloats;
  float* sS = sdO + C::kTileFloats;  // [64][64]: P^T, then dS^T
  float* sL = sS + kTile * kTile;    // [64] lse of the query tile
  float* sDl = sL + kTile;           // [64] delta of the query tile

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int kt = blockIdx.y, k0 = kt * kTile;  // low key tiles see the most queries: first
  const int nt = gridDim.y;
  const int64_t rs = 3LL * H * D, ors = static_cast<int64_t>(H) * D;
  const float* qbase = qkv + static_cast<int64_t>(b) * T * rs + static_cast<int64_t>(h) * D;
  const float* kbase = qbase + ors;
  const float* vbase = kbase + ors;
  const float* dobase = dout + static_cast<int64_t>(b) * T * ors + static_cast<int64_t>(h) * D;
  const int d4n = (D + 3) / 4;

  load_tile<DMAX>(sK, kbase, rs, k0, T, D);
  load_tile<DMAX>(sV, vbase, rs, k0, T, D);
  float dk[kRowsPerWarp][C::DV], dv[kRowsPerWarp][C::DV];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int k = 0; k < C::DV; ++k) dk[r][k] = dv[r][k] = 0.f;

  for (int qt = kt; qt < nt; ++qt) {
    const int q0 = qt * kTile;
    __syncthreads();
    load_tile<DMAX>(sQ, qbase, rs, q0, T, D);
    load_tile<DMAX>(sdO, dobase, ors, q0, T, D);
    if (threadIdx.x < kTile) {
      const int i = q0 + threadIdx.x;
      sL[threadIdx.x] = i < T ? lse[static_cast<int64_t>(bh) * T + i] : 0.f;
      sDl[threadIdx.x] = i < T ? delta[static_cast<int64_t>(bh) * T + i] : 0.f;
    }
    __syncthreads();
    float st[kRowsPerWarp][2], dpt[kRowsPerWarp][2];
    tile_dot<DMAX>(st, sK, sQ, d4n, warp, lane);   // st[r][c] = k_j . q_i
    tile_dot<DMAX>(dpt, sV, sdO, d4n, warp, lane); // dpt[r][c] = v_j . dO_i
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int j = k0 + warp * kRowsPerWarp + r;
      float* srow = sS + (warp * kRowsPerWarp + r) * kTile;
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int ic = lane + kWarp * c;
        const int i = q0 + ic;
        const float p = (i < T && j <= i) ? expf(st[r][c] * scale - sL[ic]) : 0.f;
        dpt[r][c] = p * (dpt[r][c] - sDl[ic]);  // dS^T
        srow[ic] = p;                           // P^T
      }
    }
    __syncwarp();
    tile_accumulate<DMAX>(dv, sS, sdO, warp, lane);
    __syncwarp();
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      float* srow = sS + (warp * kRowsPerWarp + r) * kTile;
      srow[lane] = dpt[r][0];
      srow[lane + kWarp] = dpt[r][1];
    }
    __syncwarp();
    tile_accumulate<DMAX>(dk, sS, sQ, warp, lane);
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int j = k0 + warp * kRowsPerWarp + r;
    if (j >= T) continue;
    float* row = dqkv + (static_cast<int64_t>(b) * T + j) * rs + static_cast<int64_t>(h) * D;
#pragma unroll
    for (int k = 0; k < C::DV; ++k) {
      const int d = lane + kWarp * k;
      if (d < D) {
        row[ors + d] = dk[r][k] * scale;
        row[2 * ors + d] = dv[r][k];
      }
    }
  }
}

// ------------------------------------------------------------------ launch helpers

struct Dims {
  int B, T, H, D;
};

Dims check_dims(int64_t B, int64_t T, int64_t H, int64_t D) {
  TANDEM_CHECK(D >= 1 && D <= 128, "cuda attention supports head dims 1..128, got {}", D);
  TANDEM_CHECK(B * H <= 0x7fffffff && T <= 0x7fffffff / 3 && (T + kTile - 1) / kTile <= 65535,
               "cuda attention grid too large: B={} T={} H={}", B, T, H);
  return {static_cast<int>(B), static_cast<int>(T), static_cast<int>(H), static_cast<int>(D)};
}

template <class Kernel>
void set_smem(CudaContext& ctx, Kernel kernel, size_t bytes, const char* name) {
  int optin = 0;
  TANDEM_CUDA_CHECK(
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx.device));
  TANDEM_CHECK(bytes <= static_cast<size_t>(optin),
               "{} needs {} bytes of shared memory, device {} allows {}", name, bytes, ctx.device,
               optin);
  TANDEM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)));
}

template <int DMAX>
void forward_impl(CudaContext& ctx, float* out, float* lse, float* probs, const float* qkv,
                  const Dims& d, float scale) {
  const int nt = (d.T + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(d.B * d.H), static_cast<unsigned>(nt));
  const size_t fwd_bytes = (3 * Cfg<DMAX>::kTileFloats + kTile * kTile) * sizeof(float);
  set_smem(ctx, attn_forward_kernel<DMAX>, fwd_bytes, "attn_forward_kernel");
  attn_forward_kernel<DMAX><<<grid, kThreads, fwd_bytes, ctx.stream>>>(out, lse, qkv, d.T, d.H,
                                                                       d.D, scale);
  TANDEM_LAUNCH_CHECK("attn_forward_kernel");
  if (probs) {
    const size_t p_bytes = 2 * Cfg<DMAX>::kTileFloats * sizeof(float);
    set_smem(ctx, attn_probs_kernel<DMAX>, p_bytes, "attn_probs_kernel");
    attn_probs_kernel<DMAX><<<grid, kThreads, p_bytes, ctx.stream>>>(probs, lse, qkv, d.T, d.H,
                                                                     d.D, scale);
    TANDEM_LAUNCH_CHECK("attn_probs_kernel");
  }
}

template <int DMAX>
void backward_impl(CudaContext& ctx, float* dqkv, const float* dout, const float* qkv,
                   const float* lse, const float* delta, const Dims& d, float scale) {
  const int nt = (d.T + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(d.B * d.H), static_cast<unsigned>(nt));
  const size_t dq_bytes = (4 * Cfg<DMAX>::kTileFloats + kTile * kTile) * sizeof(float);
  set_smem(ctx, attn_backward_dq_kernel<DMAX>, dq_bytes, "attn_backward_dq_kernel");
  attn_backward_dq_kernel<DMAX><<<grid, kThreads, dq_bytes, ctx.stream>>>(
      dqkv, dout, qkv, lse, delta, d.T, d.H, d.D, scale);
  TANDEM_LAUNCH_CHECK("attn_backward_dq_kernel");
  const size_t kv_bytes =
      (4 * Cfg<DMAX>::kTileFloats + kTile * kTile + 2 * kTile) * sizeof(float);
  set_smem(ctx, attn_backward_dkdv_kernel<DMAX>, kv_bytes, "attn_backward_dkdv_kernel");
  attn_backward_dkdv_kernel<DMAX><<<grid, kThreads, kv_bytes, ctx.stream>>>(
      dqkv, dout, qkv, lse, delta, d.T, d.H, d.D, scale);
  TANDEM_LAUNCH_CHECK("attn_backward_dkdv_kernel");
}

}  // namespace

void attention_forward(CudaContext& ctx, float* out, float* lse, float* probs, const float* qkv,
                       int64_t B, int64_t T, int64_t H, int64_t D) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  const Dims d = check_dims(B, T, H, D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  if (d.D <= 32) forward_impl<32>(ctx, out, lse, probs, qkv, d, scale);
  else if (d.D <= 64) forward_impl<64>(ctx, out, lse, probs, qkv, d, scale);
  else forward_impl<128>(ctx, out, lse, probs, qkv, d, scale);
}

void attention_backward(CudaContext& ctx, float* dqkv, const float* dout, const float* qkv,
                        const float* out, const float* lse, const float* probs, int64_t B,
                        int64_t T, int64_t H, int64_t D) {
  (void)probs;  // P is recomputed from qkv and lse (see the contract above)
  if (B <= 0 || T <= 0 || H <= 0) return;
  const Dims d = check_dims(B, T, H, D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t rows = B * T * H;
  Scratch scratch(ctx, static_cast<size_t>(rows) * sizeof(float));
  float* delta = scratch.as<float>();
  attn_delta_kernel<<<grid_for(ctx, rows, kThreads / kWarp), kThreads, 0, ctx.stream>>>(
      delta, dout, out, d.B, d.T, d.H, d.D);
  TANDEM_LAUNCH_CHECK("attn_delta_kernel");
  if (d.D <= 32) backward_impl<32>(ctx, dqkv, dout, qkv, lse, delta, d, scale);
  else if (d.D <= 64) backward_impl<64>(ctx, dqkv, dout, qkv, lse, delta, d, scale);
  else backward_impl<128>(ctx, dqkv, dout, qkv, lse, delta, d, scale);
}

}  // namespace tandem::kernels::cuda
