// Serving windows (contract in engine_window.h).
#include "serve/engine_window.h"

#include "runtime/core/error.h"
#include "serve/serve_loop.h"

namespace tandem::serve {

namespace {

WindowReport follow_window(StepExecutor& exec, const WindowRequest& w) {
  WindowReport rep;
  for (;;) {
    StepMessage m = exec.exchange(nullptr);
    if (m.command == StepCommand::EndWindow) break;
    if (m.command == StepCommand::Refresh) {
      w.refresh();
      rep.refreshed = true;
    } else if (m.command == StepCommand::Forward || m.command == StepCommand::Recompute) {
      exec.run(m);
      ++rep.steps;
    } else {
      TANDEM_CHECK(m.command == StepCommand::Idle, "serving window: unexpected step command {}",
                   static_cast<int>(m.command));
    }
  }
  return rep;
}

enum class Move { None, Refresh, Step };

}  // namespace

WindowReport run_window(EngineFront& front, StepExecutor& exec, const WindowRequest& w, WindowPacing& pacing) {
  if (!exec.is_leader()) return follow_window(exec, w);
  WindowReport rep;
  const double opened = front.now();
  const bool paced = !w.drain && pacing.max_window_s > 0.0;
  // After a capped window, training has the replica until resume_at: only drops happen.
  const bool resting = paced && opened < pacing.resume_at;
  for (;;) {
    if (w.max_steps > 0 && rep.steps >= w.max_steps) break;  // before planning: nothing half-done
    if (paced && rep.steps > 0 && front.now() - opened >= pacing.max_window_s) {
      rep.capped = true;
      break;
    }
    StepPlan plan;
    StepMessage m;
    Move move = Move::None;
    front.with_core([&](EngineCore& c) {
      const double t = front.now();
      c.set_training_version(w.training_version >= 0 ? w.training_version : w.live_version);
      if (w.weight_syncs >= 0) c.set_weight_syncs(w.weight_syncs);
      const bool stale = w.live_version > c.weights_version();
      if (resting) {
        plan = c.sweep(t);
      } else if (stale && c.running() == 0 && c.queued() == 0 && !w.eager_refresh) {
        // Nothing to serve: the copy stays as it is until a request needs it (a refresh
        // costs a copy of this rank's weights; an idle safe point costs a broadcast).
        c.set_admission(true);
        plan = c.sweep(t);
      } else if (stale && c.running() == 0) {
        move = Move::Refresh;
      } else {
        c.set_admission(!stale);
        // A realtime request queued behind a stale copy waits for the sequences still running
        // on it: draining them is realtime work too (not held to the batch budget).
        const int64_t queued_rt = c.queued(Priority::Realtime);
        const int64_t queued_all = stale ? 0 : c.queued();
        const bool realtime = c.running(Priority::Realtime) > 0 || queued_rt > 0;
        const bool any = c.running() > 0 || queued_all > 0;
        const bool batch_ok = w.drain || c.batch_seconds() < w.batch_budget * t;
        plan = realtime || (any && batch_ok) ? c.plan(t) : c.sweep(t);
        if (!plan.empty()) {
          m = c.step_message(plan);
          move = Move::Step;
        }
      }
    });
    front.dispatch();  // dropped requests' failures
    if (move == Move::Refresh) {
      const double tr = front.now();
      StepMessage r;
      r.command = StepCommand::Refresh;
      exec.exchange(&r);
      w.refresh();
      front.with_core([&](EngineCore& c) {
        c.note_busy(front.now() - tr);
        c.refreshed(exec.weights_version());
      });
      rep.refreshed = true;
      continue;
    }
    if (move == Move::None) break;  // nothing (more) this window may run
    if (rep.steps == 0) front.with_core([](EngineCore& c) { c.note_window_opened(); });
    run_step(front, exec, plan, m);
    ++rep.steps;
  }
  if (rep.capped) {
    const double closed = front.now();
    pacing.resume_at = closed + (closed - opened);
    ++pacing.capped;
  }
  front.flush_held();  // nothing waits for the next window
  StepMessage end;
  end.command = StepCommand::EndWindow;
  exec.exchange(&end);
  return rep;
}

}  // namespace tandem::serve
