// The caching allocator template on the CPU: reuse, the cache bound (least recently freed
// released first), stats (current / peak / reserved / cached), the release-and-retry-once
// failure path and its message; once over a scripted memory kind that counts every call and
// can be made to fail, and once over real host memory (CachingHostAllocator).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "runtime/core/caching_allocator.h"

namespace tandem {
namespace {

// A memory kind with a capacity: blocks are 16-byte multiples, taken from a fake address
// space; allocate fails when the capacity would be exceeded. Every call is logged.
struct ScriptedMemory {
  struct Log {
    size_t capacity = 1 << 20;
    size_t held = 0;
    uintptr_t next = 0x1000;
    int allocs = 0, failures = 0;
    std::vector<std::pair<uintptr_t, size_t>> released;  // in order
  };
  Log* log;
  size_t fit_slack = 0;  // max_reuse(block) = block + block * fit_slack / 4

  size_t block_size(size_t bytes) const { return bytes == 0 ? 16 : (bytes + 15) / 16 * 16; }
  size_t max_reuse(size_t block) const { return block + block * fit_slack / 4; }
  void* allocate(size_t block, std::string& why) {
    if (log->held + block > log->capacity) {
      ++log->failures;
      why = fmt::format("scripted: {} held + {} > capacity {}", log->held, block, log->capacity);
      return nullptr;
    }
    ++log->allocs;
    log->held += block;
    void* p = reinterpret_cast<void*>(log->next);
    log->next += block + 16;
    return p;
  }
  void release(void* p, size_t block) noexcept {
    log->held -= block;
    log->released.emplace_back(reinterpret_cast<uintptr_t>(p), block);
  }
  std::string describe() const { return "scripted memory"; }
  std::string failure_note() const { return "note from the memory kind"; }
};

using Scripted = CachingAllocator<ScriptedMemory>;

TEST(CachingAllocator, ReusesFreedBlocksOfTheSameSize) {
  ScriptedMemory::Log log;
  Scripted a(ScriptedMemory{&log}, 1 << 20);
  void* p = a.allocate(100);  // block 112
  a.deallocate(p, 100);
  void* q = a.allocate(100);
  EXPECT_EQ(q, p);
  void* r = a.allocate(97);  // rounds to the same block size, but that block is in use
  EXPECT_NE(r, p);
  EXPECT_EQ(log.allocs, 2);
  a.deallocate(q, 100);
  a.deallocate(r, 97);
  void* s = a.allocate(110);  // 112 again: served from the cache
  EXPECT_TRUE(s == p || s == r);
  EXPECT_EQ(log.allocs, 2);
  a.deallocate(s, 110);
}

TEST(CachingAllocator, ExactFitUnlessTheKindAllowsLargerBlocks) {
  ScriptedMemory::Log log;
  {
    Scripted exact(ScriptedMemory{&log}, 1 << 20);
    void* big = exact.allocate(160);
    exact.deallocate(big, 160);
    void* small = exact.allocate(128);  // the cached 160 is not an exact fit
    EXPECT_NE(small, big);
    exact.deallocate(small, 128);
  }
  ScriptedMemory::Log log2;
  Scripted loose(ScriptedMemory{&log2, 1}, 1 << 20);  // up to 25% larger
  void* big = loose.allocate(160);
  loose.deallocate(big, 160);
  void* small = loose.allocate(128);  // 160 <= 128 * 1.25: reused
  EXPECT_EQ(small, big);
  EXPECT_EQ(loose.stats().reserved, 160u);
  EXPECT_EQ(loose.stats().current, 128u);
  loose.deallocate(small, 128);
  void* tiny = loose.allocate(64);  // 160 > 64 * 1.25: a new block
  EXPECT_NE(tiny, big);
  loose.deallocate(tiny, 64);
}

TEST(CachingAllocator, StatsCountRequestedAndHeldBytes) {
  ScriptedMemory::Log log;
  Scripted a(ScriptedMemory{&log}, 1 << 20);
  void* p = a.allocate(100);  // block 112
  void* q = a.allocate(40);   // block 48
  MemoryStats s = a.stats();
  EXPECT_EQ(s.current, 140u);
  EXPECT_EQ(s.peak, 140u);
  EXPECT_EQ(s.reserved, 160u);
  EXPECT_EQ(s.cached, 0u);
  a.deallocate(p, 100);
  s = a.stats();
  EXPECT_EQ(s.current, 40u);
  EXPECT_EQ(s.peak, 140u);
  EXPECT_EQ(s.reserved, 160u) << "the freed block stays held, in the cache";
  EXPECT_EQ(s.cached, 112u);
  a.reset_peak();
  EXPECT_EQ(a.stats().peak, 40u);
  a.release_cache();
  s = a.stats();
  EXPECT_EQ(s.reserved, 48u);
  EXPECT_EQ(s.cached, 0u);
  EXPECT_EQ(log.held, 48u) << "release_cache gave the cached block back to the memory kind";
  a.deallocate(q, 40);
}

TEST(CachingAllocator, BoundReleasesTheLeastRecentlyFreedBlocks) {
  ScriptedMemory::Log log;
  Scripted a(ScriptedMemory{&log}, 300);
  void* b1 = a.allocate(128);
  void* b2 = a.allocate(64);
  void* b3 = a.allocate(128);
  void* b4 = a.allocate(32);
  a.deallocate(b1, 128);  // cached 128
  a.deallocate(b2, 64);   // cached 192
  a.deallocate(b3, 128);  // 320 > 300: b1 (freed first) goes
  ASSERT_EQ(log.released.size(), 1u);
  EXPECT_EQ(log.released[0], std::make_pair(reinterpret_cast<uintptr_t>(b1), size_t{128}));
  EXPECT_EQ(a.stats().cached, 192u);
  a.deallocate(b4, 32);  // 224: within the bound
  EXPECT_EQ(log.released.size(), 1u);
  // Reuse refreshes nothing that stays cached, but a re-freed block is the newest again.
  void* again = a.allocate(64);
  EXPECT_EQ(again, b2);
  a.deallocate(again, 64);  // order now (oldest first): b3, b4, b2
  a.set_cache_limit(100);   // keeps only what fits, newest last: b4 + b2 = 96
  ASSERT_EQ(log.released.size(), 2u);
  EXPECT_EQ(log.released[1].first, reinterpret_cast<uintptr_t>(b3));
  EXPECT_EQ(a.stats().cached, 96u);
  EXPECT_EQ(a.cache_limit(), 100u);
  // A block larger than the bound is released at once; the cached blocks stay.
  void* huge = a.allocate(512);
  a.deallocate(huge, 512);
  ASSERT_EQ(log.released.size(), 3u);
  EXPECT_EQ(log.released.back(), std::make_pair(reinterpret_cast<uintptr_t>(huge), size_t{512}));
  EXPECT_EQ(a.stats().cached, 96u);
  a.set_cache_limit(0);
  EXPECT_EQ(a.stats().cached, 0u);
  EXPECT_EQ(log.held, 0u);
}

TEST(CachingAllocator, FailureReleasesTheCacheAndRetriesOnce) {
  ScriptedMemory::Log log;
  log.capacity = 256;
  Scripted a(ScriptedMemory{&log}, 1 << 20);
  void* p = a.allocate(96);
  void* q = a.allocate(96);
  a.deallocate(p, 96);
  a.deallocate(q, 96);  // 192 cached, 64 left in the kind
  void* r = a.allocate(128);  // fails once, the cache is released, the retry succeeds
  EXPECT_EQ(log.failures, 1);
  EXPECT_EQ(log.released.size(), 2u);
  EXPECT_EQ(a.stats().cached, 0u);
  EXPECT_EQ(a.stats().current, 128u);
  // Now 128 are in use and nothing is cached: 200 more cannot fit even after the release.
  try {
    a.allocate(200);
    FAIL() << "allocation beyond the capacity succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(log.failures, 3);  // first try and the one retry
    EXPECT_NE(m.find("scripted memory: out of memory allocating 200 bytes (a block of 208)"),
              std::string::npos) << m;
    EXPECT_NE(m.find("scripted: 128 held + 208 > capacity 256"), std::string::npos) << m;
    EXPECT_NE(m.find("holds 128 bytes in 1 blocks in use"), std::string::npos) << m;
    EXPECT_NE(m.find("released its 0 cached bytes (0 blocks) before one retry"),
              std::string::npos) << m;
    EXPECT_NE(m.find("note from the memory kind"), std::string::npos) << m;
  }
  EXPECT_EQ(a.stats().current, 128u) << "a failed allocation counts nothing";
  a.deallocate(r, 128);
}

TEST(CachingAllocator, RejectsForeignPointers) {
  ScriptedMemory::Log log;
  Scripted a(ScriptedMemory{&log}, 1 << 20);
  int local = 0;
  try {
    a.deallocate(&local, 4);
    FAIL() << "a pointer from elsewhere was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a block in use here"), std::string::npos) << e.what();
  }
  void* p = a.allocate(32);
  EXPECT_THROW(a.deallocate(p, 64), Error);  // more bytes than its block
  a.deallocate(p, 32);
  EXPECT_THROW(a.deallocate(p, 32), Error);  // twice
}

TEST(CachingHostAllocator, AlignedReusedAndBounded) {
  CachingHostAllocator a(AlignedHostMemory{}, size_t{8} << 20);
  void* p = a.allocate(1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  std::memset(p, 1, 1000);
  a.deallocate(p, 1000);
  EXPECT_EQ(a.allocate(1000), p);
  a.deallocate(p, 1000);
  void* big = a.allocate((size_t{3} << 20) + 5);  // huge-page block: 2 MiB aligned, 4 MiB
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big) % (size_t{2} << 20), 0u);
  EXPECT_EQ(a.stats().reserved, (size_t{4} << 20) + 1024);
  a.deallocate(big, (size_t{3} << 20) + 5);
  EXPECT_EQ(a.stats().cached, (size_t{4} << 20) + 1024);
  a.set_cache_limit(size_t{4} << 20);  // the 1 KiB block was freed first: it goes, not the big one
  EXPECT_EQ(a.stats().cached, size_t{4} << 20);
  EXPECT_EQ(a.stats().current, 0u);
}

TEST(CachingHostAllocator, FailureMessageNamesTheSizeAndTheMachine) {
  CachingHostAllocator a(AlignedHostMemory{}, size_t{1} << 20);
  void* keep = a.allocate(4096);
  a.deallocate(keep, 4096);  // one cached block, released before the retry
  const size_t absurd = size_t{1} << 60;
  try {
    a.allocate(absurd);
    FAIL() << "an allocation of 2^60 bytes succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(fmt::format("host memory: out of memory allocating {} bytes", absurd)),
              std::string::npos) << m;
    EXPECT_NE(m.find("aligned_alloc returned null"), std::string::npos) << m;
    EXPECT_NE(m.find("released its 4096 cached bytes (1 blocks)"), std::string::npos) << m;
    EXPECT_NE(m.find("bytes of physical memory available"), std::string::npos) << m;
  }
  EXPECT_EQ(a.stats().cached, 0u);
  EXPECT_GT(default_host_cache_limit(), 0u);
}

}  // namespace
}  // namespace tandem
