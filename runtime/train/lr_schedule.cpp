// Warm-up + cosine learning rate.
#include "runtime/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace tandem {

float LrSchedule::at(int step) const {
  if (warmup > 0 && step <= warmup) return lr * static_cast<float>(step) / static_cast<float>(warmup);
  const float min_lr = lr * min_lr_ratio;
  const int span = std::max(1, steps - warmup);
  const double progress = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return static_cast<float>(min_lr + (lr - min_lr) * cosine);
}

}  // namespace tandem
