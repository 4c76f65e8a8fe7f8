// Allocators of the CUDA backend: the caching allocator (runtime/core/caching_allocator.h) over
// device memory and over pinned host memory.
//
// Contract: CudaDeviceAllocator and CudaPinnedHostAllocator are CachingAllocator<Memory> with
// the memory kinds below; reuse, the cache bound, stats, the release-and-retry-once failure
// path and the stream-ordered reuse rule are the template's (see its contract).
//   CudaDeviceMemory{device}  cudaMalloc / cudaFree on `device` (the caller's current device is
//                             restored); blocks of 512 B multiples below 1 MiB, 128 KiB
//                             multiples above; a request may take a cached block up to 25%
//                             larger (so sizes that vary a little still reuse); the failure
//                             note gives the device's free and total memory (cudaMemGetInfo).
//   CudaPinnedMemory          cudaMallocHost / cudaFreeHost, 64 B multiples, exact fit.
// Default bounds of the cache: half the device's memory, and the smaller of 8 GiB and an
// eighth of physical memory for pinned memory (pinned pages are taken from the OS for good).
// Every device byte of the backend comes from its CudaDeviceAllocator: tensors, the kernels'
// scratch (kernels/cuda/common.cuh) and the cuBLAS/cuBLASLt workspace. Not counted: what the
// CUDA driver, cuBLAS handles and NCCL allocate for themselves (contexts, NCCL's channel
// buffers).
#pragma once

#include <cstddef>
#include <string>

#include "runtime/core/caching_allocator.h"

namespace tandem {

struct CudaDeviceMemory {
  int device = 0;
  size_t block_size(size_t bytes) const;
  size_t max_reuse(size_t block) const { return block + block / 4; }
  void* allocate(size_t block, std::string& why);
  void release(void* p, size_t block) noexcept;
  std::string describe() const;
  std::string failure_note() const;
};

struct CudaPinnedMemory {
  size_t block_size(size_t bytes) const;
  size_t max_reuse(size_t block) const { return block; }
  void* allocate(size_t block, std::string& why);
  void release(void* p, size_t block) noexcept;
  std::string describe() const { return "pinned host memory"; }
  std::string failure_note() const;
};

using CudaDeviceAllocator = CachingAllocator<CudaDeviceMemory>;
using CudaPinnedHostAllocator = CachingAllocator<CudaPinnedMemory>;

extern template class CachingAllocator<CudaDeviceMemory>;
extern template class CachingAllocator<CudaPinnedMemory>;

// Half of `device`'s memory (cudaMemGetInfo); throws tandem::Error when the query fails.
size_t default_device_cache_limit(int device);
// min(8 GiB, physical memory / 8); 1 GiB when physical memory is unknown.
size_t default_pinned_cache_limit();

}  // namespace tandem
