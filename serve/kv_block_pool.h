// KvBlockPool: the fixed set of KV-cache block ids of one serving replica.
//
// Contract: the pool never grows; allocate() is all-or-nothing and returns false when too few
// blocks are free (the caller waits or refuses); release() returns a sequence's blocks and
// throws on a block that is not in use (a double free is a bug, never silently ignored).
// Leader-side bookkeeping only: the K/V memory itself is runtime/model/kv_cache.h on every rank.
#pragma once

#include <cstdint>
#include <vector>

namespace tandem::serve {

class KvBlockPool {
 public:
  explicit KvBlockPool(int32_t num_blocks);
  bool allocate(int32_t n, std::vector<int32_t>& out);  // appends n ids to out
  void release(std::vector<int32_t>& blocks);            // and clears `blocks`
  int32_t total() const { return static_cast<int32_t>(in_use_.size()); }
  int32_t free_count() const { return static_cast<int32_t>(free_.size()); }
  int32_t used() const { return total() - free_count(); }

 private:
  std::vector<int32_t> free_;  // a stack: recently freed blocks are reused first
  std::vector<uint8_t> in_use_;
};

}  // namespace tandem::serve
