// PipelineExecutor: runs one rank's pipeline schedule (a list of F/B actions, see
// parallel/pipeline_schedule.h) over this rank's model chunks, moving activations forward and
// gradients backward between pipeline ranks.
//
// Contract: every rank of the pp group runs its own action list for the same micro-batches.
// F(m, c) on virtual stage v receives its input from virtual stage v-1 (unless v = 0, which
// embeds the tokens) and sends its output to v+1 (unless v is the last, which computes the
// loss); B(m, c) receives d(output) from v+1 and sends d(input) to v-1. Receives block (with
// the communicator's watchdog); sends are non-blocking and complete before run() returns.
// Parameter gradients accumulate over micro-batches; during the backward of the last
// micro-batch each chunk's gradient watermark is reported to `on_final[c]`, so data-parallel
// buckets can start early. Time spent computing vs waiting is measured per run.
#pragma once

#include <functional>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/pipeline_schedule.h"
#include "runtime/model/gpt.h"

namespace tandem {

struct PipelineRunStats {
  double loss_sum = 0.0;     // summed over the micro-batches whose loss this rank computed
  int64_t loss_tokens = 0;
  double compute_s = 0.0;    // inside forward/backward
  double wait_s = 0.0;       // waiting for activations/gradients from other stages
  double total_s = 0.0;
  int max_live_states = 0;   // micro-batch activations alive at once
};

class PipelineExecutor {
 public:
  // chunks[c] is this rank's model chunk c (virtual stage c * stages + stage).
  PipelineExecutor(std::vector<Gpt*> chunks, Communicator& pp, int stages, int stage);

  // load(m, inputs, targets) fills micro-batch m's b*T tokens (called only where needed).
  using Loader = std::function<void(int microbatch, int32_t* inputs, int32_t* targets)>;
  // after_action(k), when set, is called after the k-th action (k = 1 .. n-1: not after the
  // last one) with this rank's sends still in flight and no receive posted.
  PipelineRunStats run(const std::vector<Action>& actions, int microbatches, int64_t b, int64_t T,
                       const Loader& load, bool train, float loss_scale,
                       const std::vector<std::function<void(int64_t)>>& on_final = {},
                       const std::function<void(size_t)>& after_action = {});

  // Forward-only action list (evaluation): every micro-batch through every chunk in order.
  static std::vector<Action> forward_only(int microbatches, int chunks);

 private:
  std::vector<Gpt*> chunks_;
  Communicator& pp_;
  int stages_, stage_;
};

}  // namespace tandem
