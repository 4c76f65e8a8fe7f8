// CachingAllocator<Memory>: Tandem's one caching allocator, over one kind of raw memory
// (host, CUDA device, CUDA pinned host), with a bound on the bytes it keeps cached.
//
// Contract:
//   Memory (the raw kind; copied into the allocator) provides
//     size_t block_size(size_t bytes) const   the block a request takes (>= bytes, >= 1)
//     size_t max_reuse(size_t block) const    the largest cached block a request of `block`
//                                             may take (== block: exact fit only)
//     void*  allocate(size_t block, std::string& why)   nullptr on failure, `why` says why
//     void   release(void* p, size_t block) noexcept    returns a block to the system
//     std::string describe() const            names the memory in messages ("host memory")
//     std::string failure_note() const        extra context for an out-of-memory message
//   allocate(bytes): the smallest cached block in [block_size(bytes), max_reuse(block)]
//     (the least recently freed among equals), else a new block from Memory. When Memory
//     fails, the whole cache is released and the allocation retried once; a second failure
//     throws tandem::Error naming the memory, the size, the reason, what this allocator holds
//     and what it released, plus Memory's failure_note().
//   deallocate(p, bytes): the block goes to the cache (p must come from this allocator, else
//     tandem::Error). Then, while the cached bytes exceed cache_limit(), the least recently
//     freed block is released: the blocks that went longest without reuse are the least
//     useful to keep. A block bigger than the limit is released at once, leaving the cache.
//   Stream-ordered reuse: a freed block may be handed out again at once. For device memory this
//     is safe because every kernel and copy of a backend runs on its one stream, so the next
//     user's work is queued after the last user's. Work on another stream (the NCCL
//     communicator's own stream) keeps its tensors alive until its completion event is seen
//     (parallel/cuda/nccl_communicator.h), so their blocks return here only then. Releasing a
//     device block (cudaFree) waits for the device, so a released block is never in use.
//   Stats: current/peak count requested bytes (tandem::Allocator); reserved = blocks in use at
//     their block size + cached blocks; cached = the cached blocks.
//   Destruction releases the cache; blocks still in use (tensors outliving their allocator)
//     are left to the system. Thread-safe: one mutex guards the cache.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "runtime/core/allocator.h"
#include "runtime/core/error.h"

namespace tandem {

template <class Memory>
class CachingAllocator final : public Allocator {
 public:
  CachingAllocator(Memory memory, size_t cache_limit)
      : memory_(std::move(memory)), limit_(cache_limit) {}
  ~CachingAllocator() override { release_cache(); }
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  void release_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    release_all_locked();
  }

  size_t cache_limit() const {
    std::lock_guard<std::mutex> lock(mu_);
    return limit_;
  }
  // Sets the bound and releases the least recently freed blocks beyond it at once.
  void set_cache_limit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = bytes;
    trim_locked();
  }

 protected:
  void* do_allocate(size_t bytes) override {
    const size_t block = memory_.block_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    if (void* p = take_cached_locked(block)) return p;
    std::string why;
    void* p = memory_.allocate(block, why);
    if (p == nullptr) {
      const size_t released = cached_, released_blocks = by_size_.size();
      release_all_locked();
      std::string why_retry;
      p = memory_.allocate(block, why_retry);
      if (p == nullptr) {
        const std::string note = memory_.failure_note();
        throw Error(fmt::format(
            "{}: out of memory allocating {} bytes (a block of {}): {}; this allocator holds {} "
            "bytes in {} blocks in use, and released its {} cached bytes ({} blocks) before one "
            "retry, which failed too ({}){}{}",
            memory_.describe(), bytes, block, why, in_use_, live_.size(), released,
            released_blocks, why_retry, note.empty() ? "" : "; ", note));
      }
    }
    live_.emplace(p, block);
    in_use_ += block;
    return p;
  }

  void do_deallocate(void* p, size_t bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    TANDEM_CHECK(it != live_.end(), "{}: deallocate of {} bytes at {}: not a block in use here",
                 memory_.describe(), bytes, p);
    const size_t block = it->second;
    TANDEM_CHECK(bytes <= block, "{}: deallocate of {} bytes at {}, but its block has {}",
                 memory_.describe(), bytes, p, block);
    live_.erase(it);
    in_use_ -= block;
    if (block > limit_) {  // never kept: caching it would only push out every other block
      memory_.release(p, block);
      return;
    }
    const uint64_t age = ++clock_;
    by_size_.emplace(block, Cached{p, age});
    by_age_.emplace(age, std::make_pair(block, p));
    cached_ += block;
    trim_locked();
  }

  Held held() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return Held{in_use_, cached_};
  }

 private:
  struct Cached {
    void* p;
    uint64_t age;  // when it was freed (larger = more recent)
  };

  void* take_cached_locked(size_t block) {
    auto it = by_size_.lower_bound(block);
    if (it == by_size_.end() || it->first > memory_.max_reuse(block)) return nullptr;
    // Among blocks of the chosen size, take the least recently freed.
    auto best = it;
    for (auto j = it; j != by_size_.end() && j->first == it->first; ++j)
      if (j->second.age < best->second.age) best = j;
    const size_t have = best->first;
    void* p = best->second.p;
    by_age_.erase(best->second.age);
    by_size_.erase(best);
    cached_ -= have;
    live_.emplace(p, have);
    in_use_ += have;
    return p;
  }

  void trim_locked() {
    while (cached_ > limit_ && !by_age_.empty()) {
      auto oldest = by_age_.begin();
      const auto [block, p] = oldest->second;
      auto range = by_size_.equal_range(block);
      for (auto j = range.first; j != range.second; ++j)
        if (j->second.p == p) {
          by_size_.erase(j);
          break;
        }
      by_age_.erase(oldest);
      cached_ -= block;
      memory_.release(p, block);
    }
  }

  void release_all_locked() {
    for (auto& [block, c] : by_size_) memory_.release(c.p, block);
    by_size_.clear();
    by_age_.clear();
    cached_ = 0;
  }

  Memory memory_;
  mutable std::mutex mu_;
  size_t limit_;
  std::multimap<size_t, Cached> by_size_;                    // block size -> cached block
  std::map<uint64_t, std::pair<size_t, void*>> by_age_;      // age -> (block size, block)
  std::unordered_map<void*, size_t> live_;                   // block in use -> block size
  size_t in_use_ = 0, cached_ = 0;
  uint64_t clock_ = 0;
};

// Host memory: 64-byte aligned blocks (2 MiB-aligned huge-page blocks from 2 MiB up).
struct AlignedHostMemory {
  size_t block_size(size_t bytes) const;
  size_t max_reuse(size_t block) const { return block; }
  void* allocate(size_t block, std::string& why);
  void release(void* p, size_t block) noexcept;
  std::string describe() const { return "host memory"; }
  std::string failure_note() const;
};

using CachingHostAllocator = CachingAllocator<AlignedHostMemory>;

// Physical memory of this machine in bytes (0 when unknown).
size_t physical_memory_bytes();
// The default bound of a host allocator's cache: a quarter of physical memory (1 GiB when
// unknown).
size_t default_host_cache_limit();

}  // namespace tandem
