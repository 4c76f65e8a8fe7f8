// Caching device and pinned-host allocators of the CUDA backend (contract in cuda_allocator.h).
#include "runtime/core/cuda/cuda_allocator.h"

#include <cuda_runtime.h>

#include "runtime/core/cuda/cuda_context.h"
#include "runtime/core/error.h"

namespace tandem {

namespace {

constexpr size_t kSmall = size_t{1} << 20;  // below 1 MiB: round to 512 B
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{1} << 17;  // 128 KiB

size_t round_device(size_t bytes) {
  if (bytes == 0) bytes = 1;
  size_t r = bytes < kSmall ? kSmallRound : kLargeRound;
  return (bytes + r - 1) / r * r;
}

size_t round_host(size_t bytes) {
  if (bytes == 0) bytes = 1;
  return (bytes + 63) / 64 * 64;
}

}  // namespace

// ------------------------------------------------------------------ device

CudaDeviceAllocator::~CudaDeviceAllocator() {
  std::lock_guard<std::mutex> lock(cache_mu_);
  release_cache_locked();
  // Blocks still live belong to tensors that outlive the backend; they are left to the driver.
}

void CudaDeviceAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(cache_mu_);
  release_cache_locked();
}

void CudaDeviceAllocator::release_cache_locked() {
  if (free_.empty()) return;
  int prev = -1;
  (void)cudaGetDevice(&prev);
  (void)cudaSetDevice(device_);
  for (auto& [n, p] : free_) (void)cudaFree(p);  // cudaFree waits for the device
  free_.clear();
  cached_ = 0;
  if (prev >= 0) (void)cudaSetDevice(prev);
}

void* CudaDeviceAllocator::do_allocate(size_t bytes) {
  const size_t want = round_device(bytes);
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = free_.lower_bound(want);
  if (it != free_.end() && it->first <= want + want / 4) {
    void* p = it->second;
    size_t have = it->first;
    free_.erase(it);
    cached_ -= have;
    live_.emplace(p, have);
    return p;
  }
  TANDEM_CUDA_CHECK(cudaSetDevice(device_));
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, want);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error before retrying
    release_cache_locked();
    e = cudaMalloc(&p, want);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    size_t in_use = 0;
    for (auto& [q, n] : live_) in_use += n;
    throw Error(fmt::format(
        "cuda:{} out of memory allocating {} bytes ({}): this allocator holds {} bytes in {} "
        "blocks, device has {} of {} bytes free",
        device_, bytes, cudaGetErrorString(e), in_use, live_.size(), free_b, total_b));
  }
  live_.emplace(p, want);
  return p;
}

void CudaDeviceAllocator::do_deallocate(void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = live_.find(p);
  TANDEM_CHECK(it != live_.end(), "cuda:{} deallocate of {} bytes at {} not made here", device_,
               bytes, p);
  size_t have = it->second;
  live_.erase(it);
  free_.emplace(have, p);
  cached_ += have;
}

size_t CudaDeviceAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(cache_mu_);
  return cached_;
}

// ------------------------------------------------------------------ pinned host

CudaPinnedHostAllocator::~CudaPinnedHostAllocator() {
  std::lock_guard<std::mutex> lock(cache_mu_);
  release_cache_locked();
}

void CudaPinnedHostAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(cache_mu_);
  release_cache_locked();
}

void CudaPinnedHostAllocator::release_cache_locked() {
  for (auto& [n, p] : free_) (void)cudaFreeHost(p);
  free_.clear();
  cached_ = 0;
}

void* CudaPinnedHostAllocator::do_allocate(size_t bytes) {
  const size_t want = round_host(bytes);
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = free_.find(want);
  if (it != free_.end()) {
    void* p = it->second;
    free_.erase(it);
    cached_ -= want;
    live_.emplace(p, want);
    return p;
  }
  void* p = nullptr;
  cudaError_t e = cudaMallocHost(&p, want);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    release_cache_locked();
    e = cudaMallocHost(&p, want);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t in_use = 0;
    for (auto& [q, n] : live_) in_use += n;
    throw Error(fmt::format("pinned host allocation of {} bytes failed: {} ({} bytes in use)",
                            bytes, cudaGetErrorString(e), in_use));
  }
  live_.emplace(p, want);
  return p;
}

void CudaPinnedHostAllocator::do_deallocate(void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = live_.find(p);
  TANDEM_CHECK(it != live_.end(), "pinned deallocate of {} bytes at {} not made here", bytes, p);
  size_t have = it->second;
  live_.erase(it);
  free_.emplace(have, p);
  cached_ += have;
}

size_t CudaPinnedHostAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(cache_mu_);
  return cached_;
}

}  // namespace tandem
