// TrainOptions (YAML section `train`) and SampleOptions (section `sample`).
//
// Contract: plain data, validated by launch/config. `batch` is the GLOBAL batch in sequences
// per optimizer step, whatever the layout; the loss is the mean over all its tokens.
#pragma once

#include <cstdint>
#include <string>

namespace tandem {

// Checkpoints (YAML `train.checkpoint.*`; docs/checkpoints.md). dir "" = no checkpoints.
struct CheckpointOptions {
  std::string dir;    // directory of step_XXXXXXXX.h5 files and the `latest` pointer
  int every = 0;      // save every N optimizer steps (0: only the final checkpoint)
  int keep_last = 2;  // keep the newest N checkpoints (0: keep all)
};

struct TrainOptions {
  int steps = 100;
  int batch = 8;             // sequences per optimizer step (global)
  float lr = 1e-3f;          // peak learning rate
  int warmup = 10;           // linear warm-up steps, then cosine decay to lr * min_lr_ratio
  float min_lr_ratio = 0.1f;
  float weight_decay = 0.1f;  // decoupled, on 2-d weights only (not biases, LayerNorm)
  float grad_clip = 1.0f;     // global-norm clip; 0 disables
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  uint64_t seed = 1234;
  int eval_every = 0;    // steps between validation passes; 0 = only at the end
  int eval_batches = 4;  // batches of `batch` sequences per validation pass
  std::string device = "cpu";  // cpu | cuda | auto
  // fp32 | bf16: bf16 GEMM operands with fp32 accumulation, fp32 master weights, gradients,
  // optimizer and checkpoints (docs/architecture.md "Mixed precision"); on the CPU backend bf16
  // is the reference path (the same numerics, no speed-up)
  std::string precision = "fp32";
  int threads = 0;             // CPU threads per rank; 0 = cores / ranks on this node
  int stop_after = 0;  // end the run after this step (0: run all `steps`); the schedule still spans `steps`
  CheckpointOptions checkpoint;
};

struct SampleOptions {
  std::string prompt = "The";
  int count = 3;        // continuations printed after training (0 = none)
  int tokens = 32;      // new tokens each
  float temperature = 0.8f;
  int top_k = 40;
};

}  // namespace tandem
