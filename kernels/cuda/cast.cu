// CUDA fp32 <-> bf16 conversion (kernels/cast.h): grid-stride loops, two elements per thread
// where the pointers allow (bf16x2 stores), one otherwise. Round to nearest even, as the CPU.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/bf16.cuh"
#include "kernels/cast.h"

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

__global__ void f32_to_bf16_kernel(__nv_bfloat16* dst, const float* __restrict__ src, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

// n2 pairs; dst 4-byte and src 8-byte aligned.
__global__ void f32_to_bf16_x2_kernel(__nv_bfloat162* dst, const float2* __restrict__ src,
                                      int64_t n2) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n2;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float2 v = src[i];
    dst[i] = __floats2bfloat162_rn(v.x, v.y);  // .x -> low half (element 2i), .y -> high
  }
}

__global__ void bf16_to_f32_kernel(float* dst, const __nv_bfloat16* __restrict__ src, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}

bool aligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }

}  // namespace

void f32_to_bf16(CudaContext& ctx, bf16* dst, const float* src, int64_t n) {
  if (n <= 0) return;
  if (n % 2 == 0 && aligned(dst, 4) && aligned(src, 8)) {
    f32_to_bf16_x2_kernel<<<grid_for(ctx, n / 2, 256), 256, 0, ctx.stream>>>(
        reinterpret_cast<__nv_bfloat162*>(dst), reinterpret_cast<const float2*>(src), n / 2);
    TANDEM_LAUNCH_CHECK("f32_to_bf16_x2_kernel");
  } else {
    f32_to_bf16_kernel<<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(dev(dst), src, n);
    TANDEM_LAUNCH_CHECK("f32_to_bf16_kernel");
  }
}

void bf16_to_f32(CudaContext& ctx, float* dst, const bf16* src, int64_t n) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(dst, dev(src), n);
  TANDEM_LAUNCH_CHECK("bf16_to_f32_kernel");
}

}  // namespace tandem::kernels::cuda
