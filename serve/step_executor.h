// StepExecutor: what the engine's drivers need of a replica — the leader's step broadcast and
// one forward step on every rank — so that the engine core and its drivers can be tested with
// a fake (tests/serve/fake_executor.h) and run on the real replica (serve/replica_executor.h).
//
// Contract: every rank of a replica calls exchange() and then, for Forward and Recompute
// messages, run() in the same order; the leader passes the message, followers nullptr.
#pragma once

#include <cstdint>
#include <vector>

#include "serve/step_wire.h"

namespace tandem::serve {

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  virtual bool is_leader() const = 0;
  virtual StepMessage exchange(const StepMessage* leader_message) = 0;
  // Runs a Forward or Recompute step; returns the sampled token of every logit row.
  virtual std::vector<int32_t> run(const StepMessage& m) = 0;
  // The version of the weights the replica serves from now.
  virtual int64_t weights_version() const = 0;
};

}  // namespace tandem::serve
