// GradSync: data-parallel gradient reduction in buckets that start during backward, and
// ZeRO-1 sharding of the optimizer's work.
//
// Contract: the flat gradient buffer (padded to a multiple of the dp size) is cut into buckets
// from its END towards its start, because gradients become final in that order (see gpt.h).
// During the last micro-batch's backward the caller reports, via grads_final_from(offset),
// that every gradient at flat offset >= offset is final; each bucket entirely past that mark
// is launched at once as a non-blocking collective, so communication overlaps the rest of
// backward (on a GPU the NCCL communicator runs it on its own stream, and its Request keeps the
// bucket's view of the buffer alive). finish() launches what is left and waits.
//   zero = 0: buckets are all-reduced (summed); every rank then holds the full gradient and
//             owns (updates) every parameter.
//   zero = 1: buckets are reduce-scattered; rank r receives the summed r-th slice of each
//             bucket and owns exactly those ranges (optimizer state for 1/dp of the model).
//             After the optimizer step, gather_params() all-gathers the updated slices.
// The same calls in the same order happen on every dp rank (no rank-dependent branching).
#pragma once

#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/model/param_store.h"
#include "runtime/train/adamw_optimizer.h"

namespace tandem {

class GradSync {
 public:
  GradSync(ParamStore& store, Communicator& dp, int zero, int64_t bucket_elems);
  ~GradSync();

  void begin_step();
  void grads_final_from(int64_t offset);
  void poll();
  void finish();
  void gather_params();

  // The ranges [begin, end) of the buckets of a padded flat buffer of `total` elements, last
  // range first, and the ranges dp rank `rank` of `n` owns (updates): everything without
  // ZeRO, its slice of each bucket with ZeRO-1. Pure functions of the sizes.
  static std::vector<std::pair<int64_t, int64_t>> bucket_bounds(int64_t total, int n, int64_t bucket_elems);
  static std::vector<FlatRange> owned_ranges(const ParamStore& store, int64_t total, int n, int rank,
                                             int zero, int64_t bucket_elems);

  // Ranges this rank updates (split at parameter boundaries, with decay/norm flags).
  const std::vector<FlatRange>& owned() const { return owned_; }
  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  int zero() const { return zero_; }

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;  // flat elements; end - begin is a multiple of dp
    Tensor shard;                // zero=1: receive buffer for this rank's slice
    std::unique_ptr<Request> req;
    bool launched = false;
  };
  void launch(Bucket& b);

  ParamStore& store_;
  Communicator& dp_;
  int zero_;
  std::vector<Bucket> buckets_;  // buckets_[0] is the last range of the buffer
  size_t next_ = 0;              // next bucket to launch
  std::vector<FlatRange> owned_;
};

}  // namespace tandem
