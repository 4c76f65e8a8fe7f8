// SafePointHandler: the hook through which the trainer lets a higher floor (serve/) act at a
// safe point — a moment when every rank of the replica holds weights of one version and no
// collective is in flight — without the trainer knowing what it does (../shared/DESIGN.md,
// principle 5). launch/ wires an implementation in; with none set the trainer runs alone.
//
// Contract: the trainer calls at_safe_point() on every rank at the same points in the same
// order, from its compute thread. An implementation may run collectives over the replica's
// groups (all ranks are there) but must not change parameters, gradients or optimizer state,
// and must return on every rank together (the decision to do work is taken by one rank and
// broadcast). Exceptions propagate and end the run like any training error.
#pragma once

#include <cstdint>

namespace tandem {

enum class SafePointKind {
  BetweenSteps,  // after the optimizer step (and ZeRO gather) of `step`
};

struct SafePoint {
  SafePointKind kind = SafePointKind::BetweenSteps;
  int64_t step = 0;             // the step just finished
  int64_t weights_version = 0;  // version of the weights every rank holds now
};

class SafePointHandler {
 public:
  virtual ~SafePointHandler() = default;
  virtual void at_safe_point(const SafePoint& point) = 0;
};

}  // namespace tandem
