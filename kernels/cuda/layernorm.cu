// CUDA LayerNorm over the last dimension, forward and backward.
//
// Contract (kernels/layernorm.h): rows of C; mean and rstd = 1/sqrt(var + eps) (biased
// variance, two-pass: mean first, then the mean of squared deviations) are saved by forward.
// Backward ACCUMULATES: din += rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)) with
// dnorm = dout * weight, norm = (in - mean) rstd; dweight += colsum(dout norm);
// dbias += colsum(dout). Row work: one warp per row. Parameter gradients: deterministic column
// sums (colsum.cuh), no atomics. forward_bf16: the same kernel storing out rounded to bf16.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cuda/colsum.cuh"
#include "kernels/layernorm.h"

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

template <class OutT>
__global__ void layernorm_forward_kernel(OutT* __restrict__ out, float* __restrict__ mean,
                                         float* __restrict__ rstd, const float* __restrict__ in,
                                         const float* __restrict__ weight,
                                         const float* __restrict__ bias, int64_t N, int64_t C,
                                         float eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= N) return;
  const float* x = in + row * C;
  float s = 0.f;
  for (int64_t c = lane; c < C; c += kWarp) s += x[c];
  const float m = warp_sum(s) / static_cast<float>(C);
  float v = 0.f;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float d = x[c] - m;
    v += d * d;
  }
  const float var = warp_sum(v) / static_cast<float>(C);
  const float r = 1.0f / sqrtf(var + eps);
  OutT* o = out + row * C;
  for (int64_t c = lane; c < C; c += kWarp) store_as(o + c, (x[c] - m) * r * weight[c] + bias[c]);
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

__global__ void layernorm_backward_rows_kernel(float* __restrict__ din,
                                               const float* __restrict__ dout,
                                               const float* __restrict__ in,
                                               const float* __restrict__ weight,
                                               const float* __restrict__ mean,
                                               const float* __restrict__ rstd, int64_t N,
                                               int64_t C) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= N) return;
  const float* x = in + row * C;
  const float* dy = dout + row * C;
  const float m = mean[row], r = rstd[row];
  float sd = 0.f, sdn = 0.f;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float norm = (x[c] - m) * r;
    const float dn = dy[c] * weight[c];
    sd += dn;
    sdn += dn * norm;
  }
  const float inv_c = 1.0f / static_cast<float>(C);
  const float a = warp_sum(sd) * inv_c;
  const float b = warp_sum(sdn) * inv_c;
  float* dx = din + row * C;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float norm = (x[c] - m) * r;
    const float dn = dy[c] * weight[c];
    dx[c] += (dn - a - norm * b) * r;
  }
}

struct LnParamGrad {
  const float* dout;
  const float* in;
  const float* mean;
  const float* rstd;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t c, float* acc) const {
    const float dy = dout[r * C + c];
    const float norm = (in[r * C + c] - mean[r]) * rstd[r];
    acc[0] += dy * norm;
    acc[1] += dy;
  }
};

}  // namespace

void layernorm_forward(CudaContext& ctx, float* out, float* mean, float* rstd, const float* in,
                       const float* weight, const float* bias, int64_t N, int64_t C, float eps) {
  if (N <= 0) return;
  TANDEM_CHECK(C > 0, "layernorm over {} columns", C);
  layernorm_forward_kernel<float><<<ceil_div_u(N, kRowsPerBlock), kRowsPerBlock * kWarp, 0,
                                    ctx.stream>>>(out, mean, rstd, in, weight, bias, N, C, eps);
  TANDEM_LAUNCH_CHECK("layernorm_forward_kernel");
}

void layernorm_forward_bf16(CudaContext& ctx, bf16* out, float* mean, float* rstd, const float* in,
                            const float* weight, const float* bias, int64_t N, int64_t C, float eps) {
  if (N <= 0) return;
  TANDEM_CHECK(C > 0, "layernorm over {} columns", C);
  layernorm_forward_kernel<__nv_bfloat16><<<ceil_div_u(N, kRowsPerBlock), kRowsPerBlock * kWarp, 0,
                                            ctx.stream>>>(dev(out), mean, rstd, in, weight, bias, N,
                                                          C, eps);
  TANDEM_LAUNCH_CHECK("layernorm_forward_kernel<bf16>");
}

void layernorm_backward(CudaContext& ctx, float* din, float* dweight, float* dbias,
                        const float* dout, const float* in, const float* weight,
                        const float* mean, const float* rstd, int64_t N, int64_t C) {
  if (N <= 0) return;
  TANDEM_CHECK(C > 0, "layernorm_backward over {} columns", C);
  layernorm_backward_rows_kernel<<<ceil_div_u(N, kRowsPerBlock), kRowsPerBlock * kWarp, 0,
                                   ctx.stream>>>(din, dout, in, weight, mean, rstd, N, C);
  TANDEM_LAUNCH_CHECK("layernorm_backward_rows_kernel");
  ColDst<2> dst{{dweight, dbias}};
  col_accumulate<2>(ctx, N, C, LnParamGrad{dout, in, mean, rstd, C}, dst);
}

}  // namespace tandem::kernels::cuda
