// PipelineExecutor: runs one rank's pipeline schedule (a list of F/B actions, see
// parallel/pipeline_schedule.h) over this rank's model chunks, moving activations forward and
// gradients backward between pipeline ranks as the rank's transfer plan says
// (parallel/pipeline_transfers.h).
//
// Contract: every rank of the pp group runs its own action list, for the same micro-batches,
// with its own plan from one plan_transfers() call over all ranks' lists. F(m, c) on virtual
// stage v takes its input from v-1 (unless v = 0, which embeds the tokens) and passes its
// output to v+1 (unless v is the last, which computes the loss); B(m, c) takes d(output) from
// v+1 and passes d(input) to v-1. Between ranks they travel as the plan says: each Exchange
// step is one Communicator::batch_isend_irecv (sends and receives posted together: one NCCL
// group), waited for with the communicator's watchdog before the next step; between chunks of
// this rank they are handed over without a copy. Nothing is in flight when run() returns.
// Parameter gradients accumulate over micro-batches; during the backward of the last
// micro-batch each chunk's gradient watermark is reported to `on_final[c]`, so data-parallel
// buckets can start early. Time spent computing vs waiting is measured per run.
#pragma once

#include <functional>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_transfers.h"
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
  // plan: this rank's steps, plan_transfers(lists of every rank, chunks, windows)[stage], where
  // actions == lists[stage]. at_window(k), when set, is called at the plan's Window steps (cut
  // k, see plan_transfers): every transfer of data made by any rank's first k actions has
  // completed and nothing is posted, so a serving window may run collectives there.
  PipelineRunStats run(const std::vector<Action>& actions, const TransferPlan& plan,
                       int microbatches, int64_t b, int64_t T, const Loader& load, bool train,
                       float loss_scale,
                       const std::vector<std::function<void(int64_t)>>& on_final = {},
                       const std::function<void(size_t)>& at_window = {});

  // Forward-only action list (evaluation): every micro-batch through every chunk in order.
  static std::vector<Action> forward_only(int microbatches, int chunks);

 private:
  std::vector<Gpt*> chunks_;
  Communicator& pp_;
  int stages_, stage_;
};

}  // namespace tandem
