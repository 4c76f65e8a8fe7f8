// The serve loop (contract in serve_loop.h).
#include "serve/serve_loop.h"

namespace tandem::serve {

namespace {

void follow(StepExecutor& exec) {
  for (;;) {
    StepMessage m = exec.exchange(nullptr);
    if (m.command == StepCommand::Stop) return;
    if (m.command == StepCommand::Idle) continue;
    exec.run(m);
  }
}

}  // namespace

void run_step(EngineFront& front, StepExecutor& exec, const StepPlan& plan, const StepMessage& m) {
  const double ts = front.now();
  exec.exchange(&m);
  std::vector<int32_t> sampled = exec.run(m);
  front.with_core([&](EngineCore& c) {
    const double t = front.now();
    c.note_step(t - ts, c.has_realtime(plan));
    c.commit(plan, sampled, t);
  });
  front.dispatch();
}

void serve_loop(EngineFront& front, StepExecutor& exec) {
  if (!exec.is_leader()) return follow(exec);
  front.set_ready(true);
  for (;;) {
    if (front.stop_requested()) {
      front.request_stop();  // refuse new submissions from here on
      front.with_core([](EngineCore& c) { c.fail_all(ErrorKind::ShuttingDown, "the server is shutting down"); });
      front.dispatch();
      break;
    }
    StepPlan plan;
    StepMessage m;
    front.with_core([&](EngineCore& c) {
      plan = c.plan(front.now());
      if (!plan.empty()) m = c.step_message(plan);
    });
    front.dispatch();  // requests dropped at their deadline
    if (plan.empty()) {
      front.flush_held();
      front.wait_for_work(front.options().idle_heartbeat_s);
      StepMessage idle;
      exec.exchange(&idle);
      continue;
    }
    run_step(front, exec, plan, m);
  }
  StepMessage stop;
  stop.command = StepCommand::Stop;
  exec.exchange(&stop);
  front.set_ready(false);
}

}  // namespace tandem::serve
