// CUDA elementwise family: add, scale, and a double-precision sum of squares.
//
// Contract (kernels/elementwise.h): out = a + b (out may alias a or b), x *= s, and
// sum_squares = sum x^2 accumulated in double: per-block double partials in scratch, then one
// block sums them in a fixed order (deterministic), and the result is copied to the host,
// which synchronises the stream.
#include "kernels/cuda/common.cuh"
#include "kernels/elementwise.h"

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void add_vec4_kernel(float4* out, const float4* a, const float4* b, int64_t n4) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float4 x = a[i];
    const float4 y = b[i];
    x.x += y.x; x.y += y.y; x.z += y.z; x.w += y.w;
    out[i] = x;
  }
}

__global__ void scale_kernel(float* x, float s, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] *= s;
}

constexpr int kSumThreads = 256;

__global__ void sumsq_partial_kernel(double* partial, const float* __restrict__ x, int64_t n) {
  __shared__ double red[32];
  double acc = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double v = static_cast<double>(x[i]);
    acc += v * v;
  }
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(double* result, const double* __restrict__ partial, int n) {
  __shared__ double red[32];
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) *result = acc;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

void add(CudaContext& ctx, float* out, const float* a, const float* b, int64_t n) {
  if (n <= 0) return;
  if (n % 4 == 0 && aligned16(out) && aligned16(a) && aligned16(b)) {
    add_vec4_kernel<<<grid_for(ctx, n / 4, 256), 256, 0, ctx.stream>>>(
        reinterpret_cast<float4*>(out), reinterpret_cast<const float4*>(a),
        reinterpret_cast<const float4*>(b), n / 4);
    TANDEM_LAUNCH_CHECK("add_vec4_kernel");
  } else {
    add_kernel<<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(out, a, b, n);
    TANDEM_LAUNCH_CHECK("add_kernel");
  }
}

void scale(CudaContext& ctx, float* x, float s, int64_t n) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(x, s, n);
  TANDEM_LAUNCH_CHECK("scale_kernel");
}

double sum_squares(CudaContext& ctx, const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const unsigned blocks = grid_for(ctx, n, kSumThreads, 4);
  Scratch scratch(ctx, (blocks + 1) * sizeof(double));
  double* partial = scratch.as<double>();
  double* result = partial + blocks;
  sumsq_partial_kernel<<<blocks, kSumThreads, 0, ctx.stream>>>(partial, x, n);
  TANDEM_LAUNCH_CHECK("sumsq_partial_kernel");
  sum_partials_kernel<<<1, kSumThreads, 0, ctx.stream>>>(result, partial, static_cast<int>(blocks));
  TANDEM_LAUNCH_CHECK("sum_partials_kernel");
  double host = 0.0;
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost,
                                    ctx.stream));
  TANDEM_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return host;
}

}  // namespace tandem::kernels::cuda
