// CUDA GELU (tanh approximation), forward and backward, elementwise.
//
// Contract (kernels/gelu.h): out = gelu(in) (out may alias in); din = dout * gelu'(in)
// (overwrites din; din may alias dout). Full-precision tanhf, so results match the CPU
// reference to a few ulp. forward_bf16: bf16 in and out, fp32 arithmetic, one rounding.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/bf16.cuh"
#include "kernels/gelu.h"

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCoeff = 0.044715f;

template <class T>
__global__ void gelu_forward_kernel(T* out, const T* in, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = load_f32(in + i);
    const float u = kSqrt2OverPi * (x + kCoeff * x * x * x);
    store_as(out + i, 0.5f * x * (1.0f + tanhf(u)));
  }
}

__global__ void gelu_backward_kernel(float* din, const float* in, const float* dout, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = in[i];
    const float u = kSqrt2OverPi * (x + kCoeff * x * x * x);
    const float t = tanhf(u);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kCoeff * x * x);
    const float grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    din[i] = grad * dout[i];
  }
}

}  // namespace

void gelu_forward(CudaContext& ctx, float* out, const float* in, int64_t n) {
  if (n <= 0) return;
  gelu_forward_kernel<float><<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(out, in, n);
  TANDEM_LAUNCH_CHECK("gelu_forward_kernel");
}

void gelu_forward_bf16(CudaContext& ctx, bf16* out, const bf16* in, int64_t n) {
  if (n <= 0) return;
  gelu_forward_kernel<__nv_bfloat16><<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(dev(out), dev(in), n);
  TANDEM_LAUNCH_CHECK("gelu_forward_kernel<bf16>");
}

void gelu_backward(CudaContext& ctx, float* din, const float* in, const float* dout, int64_t n) {
  if (n <= 0) return;
  gelu_backward_kernel<<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(din, in, dout, n);
  TANDEM_LAUNCH_CHECK("gelu_backward_kernel");
}

}  // namespace tandem::kernels::cuda
