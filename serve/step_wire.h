// The wire form of one engine step, broadcast by a replica's leader to every rank of its
// tp x pp group so that all of them run the same forward and issue the same collectives.
//
// Contract: encode() and decode() are inverse; the message is a flat int32 vector (floats and
// 64-bit seeds travel as their bit patterns), so it crosses any host communicator. decode()
// checks every length against the header and throws naming the sizes on a malformed message.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model/kv_cache.h"
#include "runtime/model/token_sampler.h"

namespace tandem::serve {

enum class StepCommand : int32_t {
  Idle = 0,       // nothing to run: a heartbeat, so followers' watchdogs stay quiet
  Forward = 1,    // run the batch with the KV cache
  Recompute = 2,  // run each sequence's whole context without the cache (reference mode)
  Stop = 3,       // leave the serving loop
  EndWindow = 4,  // serving windows: the window closes, training resumes
  Refresh = 5,    // serving windows: copy the training weights into the serving copy
};

struct StepMessage {
  StepCommand command = StepCommand::Idle;
  InferBatch batch;
  std::vector<SamplingParams> sampling;  // one per batch.logit_rows entry
};

std::vector<int32_t> encode_step(const StepMessage& m);
StepMessage decode_step(const std::vector<int32_t>& wire);

}  // namespace tandem::serve
