// Byte counting (Allocator) and the host memory kind of the caching allocator.
#include "runtime/core/allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "runtime/core/caching_allocator.h"

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
  const Held h = held();
  std::lock_guard<std::mutex> lock(mu_);
  return MemoryStats{current_, peak_, h.in_use + h.cached, h.cached};
}

void Allocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = current_;
}

// ------------------------------------------------------------------ host memory

namespace {
// Blocks of 2 MiB and more are 2 MiB-aligned and asked to use transparent huge pages: on
// machines that leave THP to madvise (Debian's default), 4 KiB pages cost up to 15x in
// bandwidth for large buffers (measured on the checkpoint load, docs/performance.md §4).
constexpr size_t kHuge = size_t{2} << 20;
constexpr size_t kLine = 64;
}  // namespace

size_t AlignedHostMemory::block_size(size_t bytes) const {
  TANDEM_CHECK(bytes <= SIZE_MAX / 2, "host allocation of {} bytes is beyond any machine", bytes);
  if (bytes == 0) bytes = 1;
  const size_t align = bytes >= kHuge ? kHuge : kLine;
  return (bytes + align - 1) / align * align;
}

void* AlignedHostMemory::allocate(size_t block, std::string& why) {
  const bool huge = block >= kHuge;
  void* p = std::aligned_alloc(huge ? kHuge : kLine, block);
  if (p == nullptr) {
    why = fmt::format("aligned_alloc returned null ({})", std::strerror(errno));
    return nullptr;
  }
  if (huge) ::madvise(p, block, MADV_HUGEPAGE);  // advice only: failure changes nothing
  return p;
}

void AlignedHostMemory::release(void* p, size_t) noexcept { std::free(p); }

std::string AlignedHostMemory::failure_note() const {
  const size_t phys = physical_memory_bytes();
  const long avail = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (phys == 0 || avail <= 0 || page <= 0) return "";
  return fmt::format("the machine has {} of {} bytes of physical memory available",
                     static_cast<size_t>(avail) * static_cast<size_t>(page), phys);
}

size_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<size_t>(pages) * static_cast<size_t>(page);
}

size_t default_host_cache_limit() {
  const size_t phys = physical_memory_bytes();
  return phys == 0 ? size_t{1} << 30 : phys / 4;
}

}  // namespace tandem
