// KV block id pool (contract in kv_block_pool.h).
#include "serve/kv_block_pool.h"

#include "runtime/core/error.h"

namespace tandem::serve {

KvBlockPool::KvBlockPool(int32_t num_blocks) {
  TANDEM_CHECK(num_blocks >= 1, "KV block pool of {} blocks", num_blocks);
  in_use_.assign(static_cast<size_t>(num_blocks), 0);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int32_t b = num_blocks; b-- > 0;) free_.push_back(b);
}

bool KvBlockPool::allocate(int32_t n, std::vector<int32_t>& out) {
  TANDEM_CHECK(n >= 0, "allocate {} KV blocks", n);
  if (n > free_count()) return false;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = free_.back();
    free_.pop_back();
    in_use_[static_cast<size_t>(b)] = 1;
    out.push_back(b);
  }
  return true;
}

void KvBlockPool::release(std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) {
    TANDEM_CHECK(b >= 0 && b < total() && in_use_[static_cast<size_t>(b)],
                 "release of KV block {} that is not in use (pool of {})", b, total());
    in_use_[static_cast<size_t>(b)] = 0;
    free_.push_back(b);
  }
  blocks.clear();
}

}  // namespace tandem::serve
