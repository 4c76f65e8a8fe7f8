// Checkpoint plan: which rank writes which local elements of each parameter and of its
// optimizer state, so that the ranks together write every stored element exactly once.
//
// Contract (pure functions, no I/O; unit-tested over every layout of the layout-equivalence
// test). Identical copies are written once: among tp replicas and the tied embedding copy
// only the parameter's norm owner (ParamSpec::norm_owner) writes; among dp replicas of the
// weights, dp rank r writes the r-th of dp even slices of each parameter's local elements, so
// the write is spread over the ranks. Optimizer state follows the weights without ZeRO; with
// ZeRO-1 each dp rank writes the state it holds (the dp ranks' holdings partition it).
// Every rank of a replica set reads its whole local part; the same owner sets vouch for the
// checksum on read.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model/param_store.h"
#include "runtime/train/adamw_optimizer.h"

namespace tandem {

struct OwnedRange {
  int param = 0;           // index in the ParamStore
  int64_t begin = 0, end = 0;  // the parameter's local elements
  int64_t packed = -1;         // state writes: position of `begin` in the optimizer's packed state
};

std::vector<OwnedRange> owned_param_writes(const ParamStore& store, int dp_rank, int dp_size);

std::vector<OwnedRange> owned_state_writes(const ParamStore& store,
                                           const std::vector<AdamWOptimizer::StateView>& views,
                                           int zero, int dp_rank, int dp_size);

}  // namespace tandem
