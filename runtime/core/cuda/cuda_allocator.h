// Allocators of the CUDA backend: a caching device allocator and a caching pinned-host one.
//
// Contract: both count bytes through tandem::Allocator (current/peak count requested bytes;
// reserved adds the cached free blocks). Freed blocks are kept and reused for later requests
// of the same rounded size (device: best fit within 25%), so the per-step activation buffers
// cost no cudaMalloc after the first step. Reuse is safe because all work of a backend is
// queued on its one stream: a block freed by the host is only handed out again to work that
// is queued after the work that last used it. Code that touches a block from another stream
// (NCCL, say) must make that stream wait, or synchronise, before the tensor is freed.
// On cudaMalloc failure the cache is released and the allocation retried once; a second
// failure throws tandem::Error naming the size, the stats and the device's free memory.
// Thread-safe (one mutex per allocator).
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <unordered_map>

#include "runtime/core/allocator.h"

namespace tandem {

class CudaDeviceAllocator final : public Allocator {
 public:
  explicit CudaDeviceAllocator(int device) : device_(device) {}
  ~CudaDeviceAllocator() override;
  void release_cache() override;

 protected:
  void* do_allocate(size_t bytes) override;
  void do_deallocate(void* p, size_t bytes) override;
  size_t cached_bytes() const override;

 private:
  void release_cache_locked();
  int device_;
  mutable std::mutex cache_mu_;
  std::multimap<size_t, void*> free_;       // block size -> block
  std::unordered_map<void*, size_t> live_;  // handed-out block -> block size
  size_t cached_ = 0;
};

class CudaPinnedHostAllocator final : public Allocator {
 public:
  ~CudaPinnedHostAllocator() override;
  void release_cache() override;

 protected:
  void* do_allocate(size_t bytes) override;
  void do_deallocate(void* p, size_t bytes) override;
  size_t cached_bytes() const override;

 private:
  void release_cache_locked();
  mutable std::mutex cache_mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, size_t> live_;
  size_t cached_ = 0;
};

}  // namespace tandem
