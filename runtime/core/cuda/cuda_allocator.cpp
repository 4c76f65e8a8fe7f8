// The CUDA memory kinds of the caching allocator (contract in cuda_allocator.h).
#include "runtime/core/cuda/cuda_allocator.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "runtime/core/cuda/cuda_context.h"
#include "runtime/core/error.h"

namespace tandem {

template class CachingAllocator<CudaDeviceMemory>;
template class CachingAllocator<CudaPinnedMemory>;

namespace {

constexpr size_t kSmall = size_t{1} << 20;  // below 1 MiB: round to 512 B
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{1} << 17;  // 128 KiB

size_t round_up(size_t bytes, size_t to) {
  TANDEM_CHECK(bytes <= SIZE_MAX / 2, "allocation of {} bytes is beyond any device", bytes);
  if (bytes == 0) bytes = 1;
  return (bytes + to - 1) / to * to;
}

// Makes `device` current for its lifetime and restores the caller's device after.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&prev_) != cudaSuccess) {
      (void)cudaGetLastError();
      prev_ = -1;
    }
    if (prev_ != device) ok_ = cudaSetDevice(device) == cudaSuccess;
  }
  ~DeviceScope() {
    if (prev_ >= 0) (void)cudaSetDevice(prev_);
  }
  bool ok() const { return ok_; }

 private:
  int prev_ = -1;
  bool ok_ = true;
};

}  // namespace

// ------------------------------------------------------------------ device

size_t CudaDeviceMemory::block_size(size_t bytes) const {
  return round_up(bytes, bytes < kSmall ? kSmallRound : kLargeRound);
}

void* CudaDeviceMemory::allocate(size_t block, std::string& why) {
  DeviceScope scope(device);
  if (!scope.ok()) {
    why = fmt::format("cudaSetDevice({}) failed: {}", device, cudaGetErrorString(cudaGetLastError()));
    return nullptr;
  }
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, block);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // out of memory is not sticky: clear it before the retry
    why = fmt::format("cudaMalloc: {}", cudaGetErrorString(e));
    return nullptr;
  }
  return p;
}

void CudaDeviceMemory::release(void* p, size_t) noexcept {
  DeviceScope scope(device);
  (void)cudaFree(p);  // waits for the device: the block is no longer in use by queued work
}

std::string CudaDeviceMemory::describe() const { return fmt::format("cuda:{} device memory", device); }

std::string CudaDeviceMemory::failure_note() const {
  DeviceScope scope(device);
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return fmt::format("the device has {} of {} bytes free (other processes on the GPU count too)",
                     free_b, total_b);
}

size_t default_device_cache_limit(int device) {
  DeviceScope scope(device);
  size_t free_b = 0, total_b = 0;
  TANDEM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return total_b / 2;
}

// ------------------------------------------------------------------ pinned host

size_t CudaPinnedMemory::block_size(size_t bytes) const { return round_up(bytes, 64); }

void* CudaPinnedMemory::allocate(size_t block, std::string& why) {
  void* p = nullptr;
  const cudaError_t e = cudaMallocHost(&p, block);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    why = fmt::format("cudaMallocHost: {}", cudaGetErrorString(e));
    return nullptr;
  }
  return p;
}

void CudaPinnedMemory::release(void* p, size_t) noexcept { (void)cudaFreeHost(p); }

std::string CudaPinnedMemory::failure_note() const { return AlignedHostMemory{}.failure_note(); }

size_t default_pinned_cache_limit() {
  const size_t phys = physical_memory_bytes();
  if (phys == 0) return size_t{1} << 30;
  return std::min(size_t{8} << 30, phys / 8);
}

}  // namespace tandem
