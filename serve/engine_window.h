// Serving windows: the driver of an EngineFront (serve/engine_front.h) for the two modes that
// share a replica's time with training — serve.mode windows (at the trainer's safe points,
// serve/serving_windows.h) and serve.mode dedicated (between weight syncs,
// serve/dedicated_serving.h).
//
// run_window() is called on every rank of the replica at the same point. The leader decides
// and broadcasts each move, so all ranks enter and leave together:
//  - when the live weights are newer than the serving copy, admission closes; the running
//    sequences finish on the kept copy (one version per reply), and once none runs the copy
//    refreshes (Refresh: every rank calls w.refresh) and admission reopens;
//  - engine steps run while realtime work is queued or running, and while any work is there
//    and batch-only steps have used less than batch_budget of the wall time (drain: until
//    nothing is left);
//  - a window lasts at most pacing.max_window_s (not when draining): once it has run that
//    long it ends, however much realtime work waits, and the next window opens only after as
//    much time again has passed, so training keeps at least about half of its solo rate under
//    any request load, and with dp > 1 no replica waits on another for much more than that;
//  - EndWindow closes the window. Followers run what they receive until then.
// Cancelled and expired requests are dropped at every window, even an empty one.
// Contract: main thread (MPI FUNNELED); `pacing` is the leader's state across windows.
#pragma once

#include <cstdint>
#include <functional>

#include "serve/engine_front.h"
#include "serve/step_executor.h"

namespace tandem::serve {

struct WindowRequest {
  int64_t live_version = 0;       // the weights version the training side holds now
  std::function<void()> refresh;  // copies the live weights into the serving copy (called on
                                  // every rank together; the executor's version follows)
  double batch_budget = 0.25;     // batch-only serving's share of wall time since start
  bool drain = false;             // end of run: serve everything admitted and queued
  bool eager_refresh = false;     // refresh as soon as no sequence runs, even with nothing
                                  // waiting (dedicated servers: the copy costs training nothing)
  int64_t training_version = -1;  // the trainers' version for stats (-1: live_version)
  int64_t weight_syncs = -1;      // weight versions received so far, for stats (-1: unchanged)
  int max_steps = 0;              // end the window after this many engine steps (0: no limit)
};

struct WindowPacing {
  double max_window_s = 0.0;  // serve.max_window_ms / 1e3 (0: no cap)
  double resume_at = 0.0;     // leader: a capped window's successor opens no earlier (front.now())
  int64_t capped = 0;         // windows that the cap ended
};

struct WindowReport {
  int steps = 0;           // engine steps run in the window
  bool refreshed = false;  // the serving copy took the live weights
  bool capped = false;     // the window ended at max_window_s with work left
};

WindowReport run_window(EngineFront& front, StepExecutor& exec, const WindowRequest& w, WindowPacing& pacing);

}  // namespace tandem::serve
