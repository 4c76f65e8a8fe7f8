// Byte-counting allocators.
#include "runtime/core/allocator.h"

#include <sys/mman.h>

#include <cstdlib>

#include "runtime/core/error.h"

namespace tandem {

void* Allocator::allocate(size_t bytes) {
  void* p = do_allocate(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  current_ += bytes;
  if (current_ > peak_) peak_ = current_;
  return p;
}

void Allocator::deallocate(void* p, size_t bytes) {
  do_deallocate(p, bytes);
  std::lock_guard<std::mutex> lock(mu_);
  current_ -= bytes;
}

MemoryStats Allocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return MemoryStats{current_, peak_, current_ + cached_bytes()};
}

void Allocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = current_;
}

CachingHostAllocator::~CachingHostAllocator() { release_cache(); }

void CachingHostAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(cache_mu_);
  for (auto& [n, p] : free_) std::free(p);
  free_.clear();
  cached_ = 0;
}

void* CachingHostAllocator::do_allocate(size_t bytes) {
  if (bytes == 0) bytes = 1;
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = free_.find(bytes);
    if (it != free_.end()) {
      void* p = it->second;
      free_.erase(it);
      cached_ -= bytes;
      return p;
    }
  }
  // Blocks of 2 MiB and more are 2 MiB-aligned and asked to use transparent huge pages: on
  // machines that leave THP to madvise (Debian's default), 4 KiB pages cost up to 15x in
  // bandwidth for large buffers (measured on the checkpoint load, docs/performance.md §4).
  constexpr size_t kHuge = size_t{2} << 20;
  const bool huge = bytes >= kHuge;
  const size_t align = huge ? kHuge : 64;
  const size_t rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  TANDEM_CHECK(p != nullptr, "host allocation of {} bytes failed", bytes);
  if (huge) ::madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure changes nothing
  return p;
}

void CachingHostAllocator::do_deallocate(void* p, size_t bytes) {
  if (bytes == 0) bytes = 1;
  std::lock_guard<std::mutex> lock(cache_mu_);
  free_.emplace(bytes, p);
  cached_ += bytes;
}

size_t CachingHostAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(cache_mu_);
  return cached_;
}

}  // namespace tandem
