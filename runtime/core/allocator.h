// Allocators that count bytes: current and peak in use, bytes held from the system, bytes cached.
//
// Contract: allocate() never returns null (throws tandem::Error naming the size instead);
// deallocate() takes the same byte count that was allocated. Stats are per allocator, so a
// rank's report adds its backends' allocators. current/peak count the bytes REQUESTED;
// reserved counts what the allocator holds from the system (blocks in use at their rounded
// size, plus cached free blocks), cached the free blocks alone. Every concrete allocator is a
// CachingAllocator<Memory> (runtime/core/caching_allocator.h): CachingHostAllocator below, and
// the CUDA backend's device and pinned-host allocators (runtime/core/cuda/cuda_allocator.h).
// Thread-safe: each allocator guards its counters and cache with mutexes.
#pragma once

#include <cstddef>
#include <mutex>

namespace tandem {

struct MemoryStats {
  size_t current = 0;   // bytes handed out and not yet returned (as requested)
  size_t peak = 0;      // max of current since construction or reset_peak()
  size_t reserved = 0;  // bytes held from the system: blocks in use (rounded) + cached blocks
  size_t cached = 0;    // bytes in cached free blocks (part of reserved)
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  MemoryStats stats() const;
  void reset_peak();
  // Returns cached free blocks to the system.
  virtual void release_cache() = 0;

 protected:
  struct Held {
    size_t in_use = 0;  // bytes of the blocks handed out (at their rounded size)
    size_t cached = 0;  // bytes of the cached free blocks
  };
  virtual void* do_allocate(size_t bytes) = 0;
  virtual void do_deallocate(void* p, size_t bytes) = 0;
  virtual Held held() const = 0;

 private:
  mutable std::mutex mu_;
  size_t current_ = 0;
  size_t peak_ = 0;
};

}  // namespace tandem
