// Trainer: the step loop over a (dp x tp x pp) mesh — data, the pipeline schedule of
// forward/backward micro-batches, tied-embedding and data-parallel gradient reduction,
// clipping by the global norm, AdamW (optionally ZeRO-1 sharded and/or offloaded), the
// learning-rate schedule, validation, progress lines, metrics, and samples at the end.
//
// Contract: every rank constructs the Trainer with identical options and its Mesh, and calls
// run() (or begin/step/finish); the returned TrainResult is the same on every rank. Each dp rank reads a disjoint,
// deterministic slice of every global batch (which does not depend on the layout), so every
// layout computes the same model as one rank up to fp32 rounding. Progress lines, samples and
// the metrics file come from world rank 0; each rank reports its own memory at start.
// Weights change only in the optimizer step (a safe point lies between micro-batches).
// Checkpoints (train.checkpoint.*): saved every `every` steps and at the end of the run when a
// dir is set; with `resume` the run continues from the dir's `latest` (runtime/train/checkpointer.h).
#pragma once

#include <memory>
#include <string>

#include "parallel/mesh.h"
#include "parallel/parallel_options.h"
#include "runtime/data/data_options.h"
#include "runtime/model/gpt.h"
#include "runtime/model/model_options.h"
#include "runtime/model/model_replica.h"
#include "runtime/train/safe_point.h"
#include "runtime/train/train_options.h"

namespace tandem {

struct TrainerOptions {
  ModelOptions model;
  TrainOptions train;
  DataOptions data;
  ParallelOptions parallel;
  SampleOptions sample;
  std::string metrics_out;  // JSON lines, one object per step ("" = none)
  std::string config_yaml;  // the resolved config, stored in checkpoints
  bool resume = false;      // continue from train.checkpoint.dir's `latest`
};

struct TrainResult {
  int steps = 0;
  double loss = 0.0;          // training loss of the last step
  double val_loss = 0.0;      // last validation loss (NaN if never evaluated)
  double tokens_per_s = 0.0;  // median over steps after the first
  int first_step = 1;         // 1, or the step after the checkpoint resumed from
  size_t peak_bytes = 0;      // this rank's allocator peak
};

struct StepReport {
  int step = 0;
  double loss = 0.0, grad_norm = 0.0;
  double val_loss = 0.0;  // NaN unless this step validated
  double seconds = 0.0;
};

class Trainer {
 public:
  Trainer(Backend& be, const TrainerOptions& opts, Mesh& mesh);
  ~Trainer();
  // run() = begin(); step(s) for s in [first_step(), last_step()]; finish().
  TrainResult run();
  // Reports memory, resumes from the checkpoint when asked; fixes first_step().
  void begin();
  int first_step() const;
  int last_step() const;
  // One optimizer step (data, schedule, reductions, clipping, AdamW), then validation,
  // progress line, metrics and checkpoint as configured, then the safe point BetweenSteps.
  StepReport step(int step);
  // The median rate, the final line and the samples; returns the run's result.
  TrainResult finish();

  // The weights this rank trains (shared with a serving engine at safe points).
  ModelReplica& replica();
  // Called at every safe point (nullptr: none). The handler must outlive the run.
  void set_safe_point_handler(SafePointHandler* handler);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
