// ServingWindows: serve.mode windows — the training ranks answer requests at the trainer's
// safe points (runtime/train/safe_point.h), from a serving copy of the weights.
//
// Each rank holds two ModelReplicas of one layout: the trainer's, and the engine's serving
// copy. At a safe point every rank of the replica calls run_window() (the leader decides
// and broadcasts; see engine_window.h), so a window is entered and left by all of them together, and
// with no request waiting it costs one small broadcast over the replica's control group (none
// for a one-rank replica). A reply is computed by one weights version from its first token to
// its last: while sequences decode on the copy, training goes on; once the trainer's weights
// are newer, admission closes, the running sequences finish on the kept copy, the copy is
// refreshed (a device-local copy of this rank's parameters) and admission reopens. Serving
// reads the training weights only in that copy and writes no training state, so a run under
// request load computes the same losses as one without.
//
// Contract: constructed and used on every rank of the replica with identical options; the
// trainer calls at_safe_point() from the compute thread (MPI stays FUNNELED). finish() after
// the last step serves what is queued or running (new requests are refused with
// ShuttingDown) and stops the engine on every rank.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "runtime/model/model_replica.h"
#include "runtime/train/safe_point.h"
#include "serve/engine_front.h"
#include "serve/engine_window.h"
#include "serve/step_executor.h"

namespace tandem::serve {

struct WindowsOptions {
  double batch_budget = 0.25;  // batch-only serving's share of wall time
  bool between_steps_only = false;  // open windows only between optimizer steps (the plain
                                    // alternative; the other safe points are counted, not used)
  double max_window_s = 0.2;        // serve.max_window_ms / 1e3 (engine_window.h; 0: no cap)
};

struct WindowsStats {
  int64_t safe_points[kNumSafePointKinds] = {};  // calls, by kind
  int64_t windows = 0;       // safe points at which the engine ran at least one step
  int64_t steps = 0;         // engine steps in windows
  int64_t refreshes = 0;     // serving-copy refreshes
  double window_s = 0.0;     // time inside windows that ran steps or refreshed
  double idle_check_s = 0.0; // time inside safe points that did nothing (the cost of sharing
                             // when no request waits)
  double max_gap_s = 0.0;    // longest time between two consecutive safe points
  SafePointKind max_gap_from = SafePointKind::BetweenSteps, max_gap_to = SafePointKind::BetweenSteps;
  double max_gap_after_first_s = 0.0;  // the same from the second step on (the first step
                                       // touches every buffer for the first time)
};

class ServingWindows : public SafePointHandler {
 public:
  ServingWindows(EngineFront& front, StepExecutor& exec, ModelReplica& training, ModelReplica& serving,
                 const WindowsOptions& opt);

  void at_safe_point(const SafePoint& point) override;
  void finish();
  const WindowsStats& stats() const { return stats_; }

  // Copies every chunk's parameters of `from` into `to` (same layout) and its version.
  static void copy_weights(ModelReplica& from, ModelReplica& to);

 private:
  WindowRequest request(int64_t live_version, bool drain);

  EngineFront& front_;
  StepExecutor& exec_;
  WindowPacing pacing_;
  ModelReplica& training_;
  ModelReplica& serving_;
  WindowsOptions opt_;
  WindowsStats stats_;
  bool seen_ = false;
  int64_t first_step_ = -1;
  SafePointKind last_kind_ = SafePointKind::BetweenSteps;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace tandem::serve
