// CUDA embedding lookup, forward and backward.
//
// Contract (kernels/embedding.h): the table holds logical rows [row_offset, row_offset + R).
//   forward:  out[n] = table[ids[n] - row_offset] for held rows, else 0; with accumulate,
//             out[n] += that row and rows not held add nothing.
//   backward: dtable[ids[n] - row_offset] += dout[n] for held rows (atomicAdd, since ids
//             repeat; the summation order, hence the last bits, may vary run to run).
// One block per token row; threads stride over the C columns.
#include "kernels/cuda/common.cuh"
#include "kernels/embedding.h"

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

constexpr int kThreads = 128;

__global__ void embedding_forward_kernel(float* __restrict__ out, const int32_t* __restrict__ ids,
                                         const float* __restrict__ table, int64_t C, int64_t R,
                                         int64_t row_offset, bool accumulate) {
  const int64_t n = blockIdx.x;
  const int64_t row = static_cast<int64_t>(ids[n]) - row_offset;
  const bool held = row >= 0 && row < R;
  float* o = out + n * C;
  const float* t = table + (held ? row : 0) * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    if (accumulate) {
      if (held) o[c] += t[c];
    } else {
      o[c] = held ? t[c] : 0.f;
    }
  }
}

__global__ void embedding_backward_kernel(float* __restrict__ dtable,
                                          const float* __restrict__ dout,
                                          const int32_t* __restrict__ ids, int64_t C, int64_t R,
                                          int64_t row_offset) {
  const int64_t n = blockIdx.x;
  const int64_t row = static_cast<int64_t>(ids[n]) - row_offset;
  if (row < 0 || row >= R) return;
  const float* d = dout + n * C;
  float* t = dtable + row * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(t + c, d[c]);
}

}  // namespace

void embedding_forward(CudaContext& ctx, float* out, const int32_t* ids, const float* table,
                       int64_t N, int64_t C, int64_t R, int64_t row_offset, bool accumulate) {
  if (N <= 0 || C <= 0) return;
  TANDEM_CHECK(N <= 0x7fffffff, "embedding over {} rows exceeds the grid", N);
  embedding_forward_kernel<<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(
      out, ids, table, C, R, row_offset, accumulate);
  TANDEM_LAUNCH_CHECK("embedding_forward_kernel");
}

void embedding_backward(CudaContext& ctx, float* dtable, const float* dout, const int32_t* ids,
                        int64_t N, int64_t C, int64_t R, int64_t row_offset) {
  if (N <= 0 || C <= 0) return;
  TANDEM_CHECK(N <= 0x7fffffff, "embedding_backward over {} rows exceeds the grid", N);
  embedding_backward_kernel<<<static_cast<unsigned>(N), kThreads, 0, ctx.stream>>>(
      dtable, dout, ids, C, R, row_offset);
  TANDEM_LAUNCH_CHECK("embedding_backward_kernel");
}

}  // namespace tandem::kernels::cuda
