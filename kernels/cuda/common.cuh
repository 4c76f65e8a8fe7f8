// Shared helpers for the CUDA kernel families (kernels/cuda/*.cu): launch checks, grid sizing,
// warp/block reductions, and stream-ordered scratch memory.
//
// Contract: include this header FIRST in every .cu file. It pins FMT_USE_CONSTEXPR=1 before
// fmt is seen: fmt 9 turns constexpr off under __NVCC__, which then breaks its consteval
// format strings in C++20 (the same value the host compiler uses, so no ODR mismatch).
// Every kernel runs on ctx.stream; every launch is followed by TANDEM_LAUNCH_CHECK(name).
// Scratch takes its bytes from ctx.allocator, the backend's counting device allocator (so
// peak_bytes sees them), and returns them when it goes out of scope on the host, which may be
// before the op's kernels ran: the block can be handed out again at once because every later
// user is queued behind those kernels on ctx.stream (the stream-ordered reuse rule of
// runtime/core/caching_allocator.h). A Scratch must not be used by work on another stream.
#pragma once

#ifndef FMT_USE_CONSTEXPR
#define FMT_USE_CONSTEXPR 1
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "runtime/core/allocator.h"
#include "runtime/core/cuda/cuda_context.h"
#include "runtime/core/error.h"

#define TANDEM_LAUNCH_CHECK(name)                                                            \
  do {                                                                                       \
    cudaError_t tandem_e_ = cudaGetLastError();                                              \
    if (tandem_e_ != cudaSuccess) [[unlikely]]                                               \
      ::tandem::detail::throw_check(__FILE__, __LINE__, "launch " name,                      \
                                    fmt::format("{} ({})", cudaGetErrorString(tandem_e_),    \
                                                cudaGetErrorName(tandem_e_)));               \
  } while (0)

namespace tandem::kernels::cuda_detail {

constexpr int kWarp = 32;

// Blocks for a grid-stride loop over n items: enough to fill the device a few times over.
inline unsigned grid_for(const CudaContext& ctx, int64_t n, int threads, int per_sm = 8) {
  int64_t want = (n + threads - 1) / threads;
  int64_t cap = static_cast<int64_t>(std::max(ctx.sm_count, 1)) * per_sm;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(want, cap)));
}

inline unsigned ceil_div_u(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum / max; every thread gets the result. `shared` holds >= 32 T. blockDim.x must
// be a multiple of 32. Safe to call repeatedly (synchronises before reusing `shared`).
template <class T>
__device__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? shared[lane] : T(0);
  return warp_sum(r);
}

__device__ inline float block_max(float v, float* shared) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = lane < nwarps ? shared[lane] : -INFINITY;
  return warp_max(r);
}

// Stream-ordered scratch for the duration of one op, from the backend's device allocator.
class Scratch {
 public:
  Scratch(CudaContext& ctx, size_t bytes) : alloc_(ctx.allocator), bytes_(bytes) {
    TANDEM_CHECK(alloc_ != nullptr, "cuda:{}: kernel scratch of {} bytes needs the backend's "
                 "device allocator (CudaContext::allocator is null)", ctx.device, bytes);
    ptr_ = alloc_->allocate(bytes);
  }
  ~Scratch() { alloc_->deallocate(ptr_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  Allocator* alloc_;
  size_t bytes_;
  void* ptr_ = nullptr;
};

}  // namespace tandem::kernels::cuda_detail
