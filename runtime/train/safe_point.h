// SafePointHandler: the hook through which the trainer lets a higher floor (serve/) act at a
// safe point — a moment when every rank of the replica holds weights of one version and no
// collective is in flight — without the trainer knowing what it does (docs/architecture.md,
// principle 5). launch/ wires an implementation in; with none set the trainer runs alone.
//
// Where: after every optimizer step (BetweenSteps); between pipeline actions (micro-batch
// forwards and backwards) at the cuts every pp rank can reach without waiting on another
// (parallel/pipeline_schedule.h safe_cuts; with pp = 1 every cut); and with pp = 1 also after
// every block of forward and backward and every head row chunk (Gpt::Boundary), in training
// and in validation. Never between the gradient reduction and the end of the optimizer step
// (and ZeRO gather), so every safe point sees one weights version.
// Contract: the trainer calls at_safe_point() on every rank of a replica (one dp group of
// tp x pp ranks) at the same points in the same order, from its compute thread. An implementation may run collectives over the replica's
// groups (all ranks are there) but must not change parameters, gradients or optimizer state,
// and must return on every rank together (the decision to do work is taken by one rank and
// broadcast). Exceptions propagate and end the run like any training error.
#pragma once

#include <cstdint>

namespace tandem {

enum class SafePointKind {
  BetweenSteps,         // after the optimizer step (and ZeRO gather) of `step`
  BetweenActions,       // between two pipeline actions (micro-batch forwards/backwards)
  InForward,            // after a block of a micro-batch's forward (pp = 1)
  InBackward,           // after a block of a micro-batch's backward (pp = 1)
  InHead,               // after a head row chunk (pp = 1)
};
constexpr int kNumSafePointKinds = 5;
const char* safe_point_name(SafePointKind kind);

struct SafePoint {
  SafePointKind kind = SafePointKind::BetweenSteps;
  int64_t step = 0;             // BetweenSteps: the step just finished; else the step running
  int64_t weights_version = 0;  // version of the weights every rank holds now
};

class SafePointHandler {
 public:
  virtual ~SafePointHandler() = default;
  virtual void at_safe_point(const SafePoint& point) = 0;
};

}  // namespace tandem
