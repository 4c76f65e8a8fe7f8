// Trainer: the step loop — data, forward/backward over micro-batches, clipping, AdamW,
// learning-rate schedule, validation, progress lines, metrics, and samples at the end.
//
// Contract: every rank constructs the Trainer with identical options and calls run(); the
// returned TrainResult is the same on every rank. Progress lines and samples are printed by
// rank 0 only; the metrics file (if any) is written by rank 0 only. Weights change only in
// the optimizer step (a safe point lies between steps and between micro-batches).
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"
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
  int rank = 0;             // world rank (rank 0 prints)
};

struct TrainResult {
  int steps = 0;
  double loss = 0.0;      // training loss of the last step
  double val_loss = 0.0;  // last validation loss (NaN if never evaluated)
  double tokens_per_s = 0.0;  // median over steps after the first
  size_t peak_bytes = 0;
};

class Trainer {
 public:
  Trainer(Backend& be, const TrainerOptions& opts, Communicator& tp);
  ~Trainer();
  TrainResult run();
  Gpt& model() { return *model_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Gpt> model_;
};

}  // namespace tandem
