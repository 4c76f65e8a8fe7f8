// CUDA softmax + cross-entropy stages over (possibly vocab-sharded) logits.
//
// Contract (kernels/cross_entropy.h): logits [N, Vl] hold global columns
// [col_begin, col_begin + Vl); only global columns < vocab are real. A shard with no real
// column gives rowmax = -inf and sumexp = 0 (neutral for the MAX / SUM all-reduces).
// target_logit is 0 where the target is not held here; a negative target gets loss 0 and a
// zero gradient row. dlogits = scale (softmax - onehot) on real columns, 0 on padding; it may
// alias logits (each element is read, then written, by the same thread).
// Row reductions: one block per row; per-row scalars: one thread per row.
#include "kernels/cuda/common.cuh"
#include "kernels/cross_entropy.h"

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

constexpr int kThreads = 256;

// Number of real (non-padding) columns of this shard.
__host__ __device__ inline int64_t real_cols(int64_t Vl, int64_t col_begin, int64_t vocab) {
  int64_t r = vocab - col_begin;
  return r < 0 ? 0 : (r > Vl ? Vl : r);
}

__global__ void row_max_kernel(float* __restrict__ rowmax, const float* __restrict__ logits,
                               int64_t Vl, int64_t limit) {
  __shared__ float red[32];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * Vl;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < limit; c += blockDim.x) m = fmaxf(m, row[c]);
  m = block_max(m, red);
  if (threadIdx.x == 0) rowmax[blockIdx.x] = m;
}

__global__ void row_sumexp_kernel(float* __restrict__ sumexp, const float* __restrict__ logits,
                                  const float* __restrict__ rowmax, int64_t Vl, int64_t limit) {
  __shared__ float red[32];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * Vl;
  const float m = rowmax[blockIdx.x];
  float s = 0.f;
  for (int64_t c = threadIdx.x; c < limit; c += blockDim.x) s += expf(row[c] - m);
  s = block_sum(s, red);
  if (threadIdx.x == 0) sumexp[blockIdx.x] = s;
}

__global__ void target_logit_kernel(float* __restrict__ tlogit, const float* __restrict__ logits,
                                    const int32_t* __restrict__ targets, int64_t N, int64_t Vl,
                                    int64_t col_begin) {
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = targets[n];
    const int64_t local = t - col_begin;
    tlogit[n] = (t >= 0 && local >= 0 && local < Vl) ? logits[n * Vl + local] : 0.f;
  }
}

__global__ void losses_kernel(float* __restrict__ losses, const float* __restrict__ rowmax,
                              const float* __restrict__ sumexp, const float* __restrict__ tlogit,
                              const int32_t* __restrict__ targets, int64_t N) {
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x)
    losses[n] = targets[n] < 0 ? 0.f : logf(sumexp[n]) + rowmax[n] - tlogit[n];
}

__global__ void xent_backward_kernel(float* dlogits, const float* logits,
                                     const float* __restrict__ rowmax,
                                     const float* __restrict__ sumexp,
                                     const int32_t* __restrict__ targets, int64_t Vl,
                                     int64_t col_begin, int64_t limit, float scale) {
  const int64_t n = blockIdx.x;
  const int64_t t = targets[n];
  const float* row = logits + n * Vl;
  float* drow = dlogits + n * Vl;
  if (t < 0) {
    for (int64_t c = threadIdx.x; c < Vl; c += blockDim.x) drow[c] = 0.f;
    return;
  }
  const float m = rowmax[n];
  const float inv = 1.0f / sumexp[n];
  const int64_t tl = t - col_begin;
  for (int64_t c = threadIdx.x; c < Vl; c += blockDim.x) {
    float g = 0.f;
    if (c < limit) {
      const float p = expf(row[c] - m) * inv;
      g = scale * (p - (c == tl ? 1.0f : 0.0f));
    }
    drow[c] = g;
  }
}

void check_rows(int64_t N) {
  TANDEM_CHECK(N <= 0x7fffffff, "cross-entropy over {} rows exceeds the grid", N);
}

}  // namespace

void xent_row_max(CudaContext& ctx, float* rowmax, const float* logits, int64_t N, int64_t Vl,
                  int64_t col_begin, int64_t vocab) {
  if (N <= 0) return;
  check_rows(N);
  row_max_kernel<<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(
      rowmax, logits, Vl, real_cols(Vl, col_begin, vocab));
  TANDEM_LAUNCH_CHECK("row_max_kernel");
}

void xent_row_sumexp(CudaContext& ctx, float* sumexp, const float* logits, const float* rowmax,
                     int64_t N, int64_t Vl, int64_t col_begin, int64_t vocab) {
  if (N <= 0) return;
  check_rows(N);
  row_sumexp_kernel<<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(
      sumexp, logits, rowmax, Vl, real_cols(Vl, col_begin, vocab));
  TANDEM_LAUNCH_CHECK("row_sumexp_kernel");
}

void xent_target_logit(CudaContext& ctx, float* tlogit, const float* logits, const int32_t* targets,
                       int64_t N, int64_t Vl, int64_t col_begin) {
  if (N <= 0) return;
  target_logit_kernel<<<grid_for(ctx, N, kThreads), kThreads, 0, ctx.stream>>>(
      tlogit, logits, targets, N, Vl, col_begin);
  TANDEM_LAUNCH_CHECK("target_logit_kernel");
}

void xent_losses(CudaContext& ctx, float* losses, const float* rowmax, const float* sumexp,
                 const float* tlogit, const int32_t* targets, int64_t N) {
  if (N <= 0) return;
  losses_kernel<<<grid_for(ctx, N, kThreads), kThreads, 0, ctx.stream>>>(losses, rowmax, sumexp,
                                                                        tlogit, targets, N);
  TANDEM_LAUNCH_CHECK("losses_kernel");
}

void xent_backward(CudaContext& ctx, float* dlogits, const float* logits, const float* rowmax,
                   const float* sumexp, const int32_t* targets, int64_t N, int64_t Vl,
                   int64_t col_begin, int64_t vocab, float scale) {
  if (N <= 0 || Vl <= 0) return;
  check_rows(N);
  xent_backward_kernel<<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(
      dlogits, logits, rowmax, sumexp, targets, Vl, col_begin, real_cols(Vl, col_begin, vocab),
      scale);
  TANDEM_LAUNCH_CHECK("xent_backward_kernel");
}

}  // namespace tandem::kernels::cuda
