// Bucketed, overlapped data-parallel gradient reduction (all-reduce or ZeRO-1 reduce-scatter).
#include "runtime/train/grad_sync.h"

#include <algorithm>

namespace tandem {

GradSync::GradSync(ParamStore& store, Communicator& dp, int zero, int64_t bucket_elems)
    : store_(store), dp_(dp), zero_(zero) {
  const int64_t n = dp.size();
  const int64_t total = store.padded_numel();
  TANDEM_CHECK(total % n == 0, "flat buffer of {} elements is not padded to the dp size {}", total, n);
  TANDEM_CHECK(zero == 0 || zero == 1, "parallel.zero={} (expected 0 or 1)", zero);
  for (auto [begin, end] : bucket_bounds(total, dp.size(), bucket_elems)) {
    Bucket b;
    b.begin = begin;
    b.end = end;
    if (zero_ == 1) b.shard = store.backend().empty({(end - begin) / n});
    buckets_.push_back(std::move(b));
  }
  owned_ = owned_ranges(store, total, dp.size(), dp.rank(), zero, bucket_elems);
}

std::vector<std::pair<int64_t, int64_t>> GradSync::bucket_bounds(int64_t total, int n, int64_t bucket_elems) {
  std::vector<std::pair<int64_t, int64_t>> out;
  const int64_t step = std::max<int64_t>(n, bucket_elems / n * n);
  for (int64_t end = total; end > 0;) {
    const int64_t begin = std::max<int64_t>(0, end - step);
    out.emplace_back(begin, end);
    end = begin;
  }
  return out;
}

std::vector<FlatRange> GradSync::owned_ranges(const ParamStore& store, int64_t total, int n, int rank, int zero,
                                              int64_t bucket_elems) {
  if (zero == 0) return param_ranges(store, 0, store.numel());
  std::vector<FlatRange> owned;
  auto bounds = bucket_bounds(total, n, bucket_elems);
  // Ascending flat order: walk buckets from the buffer's start.
  for (auto it = bounds.rbegin(); it != bounds.rend(); ++it) {
    const int64_t len = (it->second - it->first) / n;
    const int64_t lo = it->first + rank * len;
    for (const FlatRange& r : param_ranges(store, lo, lo + len)) owned.push_back(r);
  }
  return owned;
}

GradSync::~GradSync() {
  // Never leave a collective half-done: complete whatever was launched.
  for (Bucket& b : buckets_)
    if (b.req) {
      try {
        b.req->wait();
      } catch (...) {
      }
    }
}

void GradSync::begin_step() {
  TANDEM_CHECK(next_ == 0 || next_ == buckets_.size(), "begin_step with {} of {} buckets launched",
               next_, buckets_.size());
  next_ = 0;
  for (Bucket& b : buckets_) b.launched = false;
}

void GradSync::launch(Bucket& b) {
  b.launched = true;
  if (dp_.size() == 1) return;  // a group of one: the local gradient is already the sum
  Tensor grads = store_.grads().flat_range(b.begin, {b.end - b.begin});
  if (zero_ == 0) b.req = dp_.iall_reduce(grads, ReduceOp::Sum);
  else b.req = dp_.ireduce_scatter(b.shard, grads);
}

void GradSync::grads_final_from(int64_t offset) {
  while (next_ < buckets_.size() && buckets_[next_].begin >= offset) launch(buckets_[next_++]);
  poll();
}

void GradSync::poll() {
  for (Bucket& b : buckets_)
    if (b.req && b.req->test()) b.req.reset();
}

void GradSync::finish() {
  grads_final_from(0);
  const int64_t n = dp_.size();
  for (Bucket& b : buckets_) {
    if (b.req) b.req->wait();
    b.req.reset();
    if (zero_ == 1 && n > 1) {
      const int64_t len = (b.end - b.begin) / n;
      Tensor mine = store_.grads().flat_range(b.begin + dp_.rank() * len, {len});
      store_.backend().copy(mine, b.shard);
    }
  }
}

void GradSync::gather_params() {
  if (zero_ != 1 || dp_.size() == 1) return;
  const int64_t n = dp_.size();
  std::vector<std::unique_ptr<Request>> reqs;
  for (Bucket& b : buckets_) {
    const int64_t len = (b.end - b.begin) / n;
    store_.backend().copy(b.shard, store_.values().flat_range(b.begin + dp_.rank() * len, {len}));
    Tensor all = store_.values().flat_range(b.begin, {b.end - b.begin});
    reqs.push_back(dp_.iall_gather(all, b.shard));
  }
  for (auto& r : reqs) r->wait();
}

}  // namespace tandem
