// Trainer: the step loop over a (dp x tp x pp) mesh — data, the pipeline schedule of
// forward/backward micro-batches, tied-embedding and data-parallel gradient reduction,
// clipping by the global norm, AdamW (optionally ZeRO-1 sharded and/or offloaded), the
// learning-rate schedule, validation, progress lines, metrics, and samples at the end.
//
// Contract: every rank constructs the Trainer with identical options and its Mesh, and calls
// run(); the returned TrainResult is the same on every rank. Each dp rank reads a disjoint,
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

class Trainer {
 public:
  Trainer(Backend& be, const TrainerOptions& opts, Mesh& mesh);
  ~Trainer();
  TrainResult run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Layers [first, first + count) of virtual stage v out of `vstages` (as even as possible,
// earlier stages take the remainder).
std::pair<int, int> stage_layers(int layers, int vstages, int v);

}  // namespace tandem
