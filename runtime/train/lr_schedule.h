// Learning-rate schedule: linear warm-up, then cosine decay to lr * min_lr_ratio.
//
// Contract: step counts from 1. lr(1) = lr/warmup ... lr(warmup) = lr; then cosine from lr at
// `warmup` to lr*min_lr_ratio at `steps`. With warmup 0 the decay starts at step 1.
#pragma once

namespace tandem {

struct LrSchedule {
  float lr = 1e-3f;
  int warmup = 0;
  int steps = 1;
  float min_lr_ratio = 0.1f;
  float at(int step) const;
};

}  // namespace tandem
