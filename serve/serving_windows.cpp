// Serving at the trainer's safe points (contract in serving_windows.h).
#include "serve/serving_windows.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "serve/serve_loop.h"

namespace tandem::serve {

namespace {
using Clock = std::chrono::steady_clock;
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

ServingWindows::ServingWindows(EngineFront& front, StepExecutor& exec, ModelReplica& training,
                               ModelReplica& serving, const WindowsOptions& opt)
    : front_(front), exec_(exec), training_(training), serving_(serving), opt_(opt) {
  pacing_.max_window_s = opt.max_window_s;
  TANDEM_CHECK(opt.max_window_s >= 0.0, "serving windows: max_window_s {} < 0", opt.max_window_s);
  TANDEM_CHECK(opt.batch_budget >= 0.0 && opt.batch_budget <= 1.0,
               "serving windows: batch_budget {} outside [0, 1]", opt.batch_budget);
  TANDEM_CHECK(training.num_chunks() == serving.num_chunks(),
               "serving windows: training replica has {} chunks, the serving copy {}",
               training.num_chunks(), serving.num_chunks());
}

void ServingWindows::copy_weights(ModelReplica& from, ModelReplica& to) {
  TANDEM_CHECK(from.num_chunks() == to.num_chunks(), "copy_weights: {} chunks into {}",
               from.num_chunks(), to.num_chunks());
  for (int c = 0; c < from.num_chunks(); ++c) {
    Tensor& src = from.chunk(c).params().values();
    Tensor& dst = to.chunk(c).params().values();
    TANDEM_CHECK(src.numel() == dst.numel(), "copy_weights: chunk {} holds {} values, the copy {}",
                 c, src.numel(), dst.numel());
    to.backend().copy(dst, src);
  }
  to.set_weights_version(from.weights_version());
}

WindowRequest ServingWindows::request(int64_t live_version, bool drain) {
  WindowRequest w;
  w.live_version = live_version;
  w.batch_budget = drain ? 1.0 : opt_.batch_budget;
  w.drain = drain;
  w.refresh = [this] { copy_weights(training_, serving_); };
  return w;
}

void ServingWindows::at_safe_point(const SafePoint& point) {
  if (opt_.between_steps_only && point.kind != SafePointKind::BetweenSteps) {
    ++stats_.safe_points[static_cast<int>(point.kind)];  // counted, not used (gaps span steps)
    return;
  }
  const auto t0 = Clock::now();
  if (first_step_ < 0) first_step_ = point.step;
  if (seen_ && point.step > first_step_)
    stats_.max_gap_after_first_s = std::max(stats_.max_gap_after_first_s, seconds(t0 - last_));
  if (seen_ && seconds(t0 - last_) > stats_.max_gap_s) {
    stats_.max_gap_s = seconds(t0 - last_);
    stats_.max_gap_from = last_kind_;
    stats_.max_gap_to = point.kind;
  }
  seen_ = true;
  last_kind_ = point.kind;
  ++stats_.safe_points[static_cast<int>(point.kind)];
  const WindowReport r = run_window(front_, exec_, request(point.weights_version, false), pacing_);
  const auto t1 = Clock::now();
  if (r.steps > 0 || r.refreshed) {
    stats_.windows += r.steps > 0;
    stats_.steps += r.steps;
    stats_.refreshes += r.refreshed;
    stats_.window_s += seconds(t1 - t0);
  } else {
    stats_.idle_check_s += seconds(t1 - t0);
  }
  last_ = Clock::now();  // the gap counts training time, not the window itself
}

void ServingWindows::finish() {
  front_.stop_accepting();
  const WindowReport r = run_window(front_, exec_, request(training_.weights_version(), true), pacing_);
  stats_.steps += r.steps;
  stats_.refreshes += r.refreshed;
  front_.request_stop();
  serve_loop(front_, exec_);  // the leader fails what is left with ShuttingDown and broadcasts Stop
}

}  // namespace tandem::serve
