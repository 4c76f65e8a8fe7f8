// The serve loop: `tandem serve`'s driver of an EngineFront (serve/engine_front.h) — and the
// end of every serving mode, which fails what is left and stops the followers.
//
// serve_loop() runs on every rank of the replica (main thread: MPI stays FUNNELED). On the
// leader it loops: plan a step under the lock, broadcast it, run it, commit and dispatch its
// tokens; with nothing to run it broadcasts a heartbeat at least every idle_heartbeat_s so the
// followers' watchdogs stay quiet. Once a stop is requested (EngineFront::stop_requested) it
// fails every queued and running request with ShuttingDown, broadcasts Stop and returns;
// followers run what they receive and return at Stop.
#pragma once

#include "serve/engine_front.h"
#include "serve/step_executor.h"

namespace tandem::serve {

void serve_loop(EngineFront& front, StepExecutor& exec);

// The leader's half of one planned engine step (both drivers): broadcast and run `m`, commit
// the sampled tokens under the lock (with the step's time), then dispatch the events.
void run_step(EngineFront& front, StepExecutor& exec, const StepPlan& plan, const StepMessage& m);

}  // namespace tandem::serve
