// Allocators that count bytes: current and peak in use, and bytes held in caches.
//
// Contract: allocate() never returns null (throws tandem::Error naming the size instead);
// deallocate() takes the same byte count that was allocated. Stats are per allocator, so a
// rank's report adds its backends' allocators. Not thread-safe for concurrent allocate calls
// from several threads unless stated (the step loop allocates from one thread).
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <vector>

namespace tandem {

struct MemoryStats {
  size_t current = 0;   // bytes handed out and not yet returned
  size_t peak = 0;      // max of current since construction or reset_peak()
  size_t reserved = 0;  // bytes held from the system (current + cached free blocks)
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes);
  MemoryStats stats() const;
  void reset_peak();
  // Returns cached free blocks to the system.
  virtual void release_cache() {}

 protected:
  virtual void* do_allocate(size_t bytes) = 0;
  virtual void do_deallocate(void* p, size_t bytes) = 0;
  virtual size_t cached_bytes() const { return 0; }

 private:
  mutable std::mutex mu_;
  size_t current_ = 0;
  size_t peak_ = 0;
};

// Host memory, 64-byte aligned, with a cache of freed blocks keyed by exact size so that the
// per-step activation buffers are reused without page faults.
class CachingHostAllocator : public Allocator {
 public:
  ~CachingHostAllocator() override;
  void release_cache() override;

 protected:
  void* do_allocate(size_t bytes) override;
  void do_deallocate(void* p, size_t bytes) override;
  size_t cached_bytes() const override;

 private:
  mutable std::mutex cache_mu_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0;
};

}  // namespace tandem
