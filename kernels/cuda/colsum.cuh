// Deterministic column sums over many rows, for bias/LayerNorm parameter gradients.
//
// Contract: col_accumulate<NOUT>(ctx, N, C, f, dst...) adds, for every column c < C,
//   dst[k][c] += sum_{r < N} (value k of f(r, c))        k < NOUT
// where f(r, c, acc) adds its NOUT values into acc[0..NOUT). Two passes with a fixed order
// (row splits -> scratch partials -> one sum per column), so results are run-to-run identical
// (no atomics). Include kernels/cuda/common.cuh first.
#pragma once

#include "kernels/cuda/common.cuh"

namespace tandem::kernels::cuda_detail {

constexpr int kColX = 32, kColY = 8;

template <int NOUT, class F>
__global__ void col_partial_kernel(float* __restrict__ partial, int64_t N, int64_t C,
                                   int64_t rows_per_split, F f) {
  __shared__ float red[NOUT][kColY][kColX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColX + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < N ? r0 + rows_per_split : N;
  float acc[NOUT];
#pragma unroll
  for (int k = 0; k < NOUT; ++k) acc[k] = 0.f;
  if (c < C)
    for (int64_t r = r0 + ty; r < r1; r += kColY) f(r, c, acc);
#pragma unroll
  for (int k = 0; k < NOUT; ++k) red[k][ty][tx] = acc[k];
  __syncthreads();
  if (ty == 0 && c < C) {
#pragma unroll
    for (int k = 0; k < NOUT; ++k) {
      float s = 0.f;
#pragma unroll
      for (int y = 0; y < kColY; ++y) s += red[k][y][tx];
      partial[(static_cast<int64_t>(k) * gridDim.y + blockIdx.y) * C + c] = s;
    }
  }
}

template <int NOUT>
struct ColDst {
  float* p[NOUT];
};

template <int NOUT>
__global__ void col_final_kernel(ColDst<NOUT> dst, const float* __restrict__ partial, int64_t C,
                                 int splits) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
#pragma unroll
    for (int k = 0; k < NOUT; ++k) {
      float s = 0.f;
      for (int j = 0; j < splits; ++j) s += partial[(static_cast<int64_t>(k) * splits + j) * C + c];
      dst.p[k][c] += s;
    }
  }
}

template <int NOUT, class F>
void col_accumulate(CudaContext& ctx, int64_t N, int64_t C, F f, ColDst<NOUT> dst) {
  if (N <= 0 || C <= 0) return;
  const int64_t gx = (C + kColX - 1) / kColX;
  TANDEM_CHECK(gx <= 0x7fffffff, "column reduction over {} columns is too wide", C);
  int64_t want = (4 * static_cast<int64_t>(std::max(ctx.sm_count, 1)) + gx - 1) / gx;
  int64_t max_splits = std::max<int64_t>(1, (N + 31) / 32);
  int64_t splits = std::clamp<int64_t>(want, 1, std::min<int64_t>(max_splits, 65535));
  int64_t rows_per_split = (N + splits - 1) / splits;
  splits = (N + rows_per_split - 1) / rows_per_split;
  Scratch scratch(ctx, static_cast<size_t>(NOUT) * splits * C * sizeof(float));
  float* partial = scratch.as<float>();
  dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(splits));
  col_partial_kernel<NOUT><<<grid, dim3(kColX, kColY), 0, ctx.stream>>>(partial, N, C,
                                                                         rows_per_split, f);
  TANDEM_LAUNCH_CHECK("col_partial_kernel");
  col_final_kernel<NOUT><<<grid_for(ctx, C, 256), 256, 0, ctx.stream>>>(dst, partial, C,
                                                                       static_cast<int>(splits));
  TANDEM_LAUNCH_CHECK("col_final_kernel");
}

}  // namespace tandem::kernels::cuda_detail
