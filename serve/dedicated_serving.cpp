// Dedicated serving ranks and the trainers' weight publisher (contract in the header).
#include "serve/dedicated_serving.h"

#include <algorithm>
#include <chrono>

#include "parallel/mpi_communicator.h"
#include "runtime/core/error.h"
#include "serve/serve_loop.h"

namespace tandem::serve {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

WeightPublisher::WeightPublisher(WeightSync& sync, int sync_every) : sync_(sync), sync_every_(sync_every) {
  TANDEM_CHECK(sync_every >= 1, "weight publisher: serve.sync_every={} must be >= 1", sync_every);
}

void WeightPublisher::begin(int64_t version) {
  if (sync_.role() != SyncRole::Sender) return;
  sync_.post(version);
  sync_.announce(version, false);
  sync_.wait_sent();  // the servers hold the first weights before the first step
}

void WeightPublisher::at_safe_point(const SafePoint& point) {
  if (sync_.role() != SyncRole::Sender) return;
  const auto t0 = Clock::now();
  if (point.kind != SafePointKind::BetweenSteps) {
    sync_.progress();
    stats_.progress_s += since(t0);
    return;
  }
  sync_.announce(point.weights_version, false);
  if (point.weights_version - sync_.last_posted() >= sync_every_) {
    ++stats_.sync_points;
    if (sync_.all_senders_ready()) sync_.post(point.weights_version);
    else ++stats_.skipped;
  } else {
    sync_.progress();
  }
  stats_.sync_s += since(t0);
}

void WeightPublisher::finish(int64_t version) {
  if (sync_.role() != SyncRole::Sender) return;
  if (sync_.last_posted() != version) {
    sync_.wait_sent();
    sync_.post(version);
  }
  sync_.wait_sent();
  sync_.announce(version, true);
  sync_.wait_sent();
}

DedicatedServer::DedicatedServer(EngineFront& front, StepExecutor& exec, ModelReplica& serving, WeightSync& sync,
                                 MPI_Comm replica_comm)
    : front_(front), exec_(exec), serving_(serving), sync_(sync), comm_(replica_comm) {
  TANDEM_CHECK(sync.role() == SyncRole::Receiver, "dedicated server: its weight sync must receive");
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

void DedicatedServer::begin() {
  sync_.flip();  // the trainers post their first weights in WeightPublisher::begin
  front_.with_core([&](EngineCore& c) { c.refreshed(serving_.weights_version()); });
  front_.set_ready(true);
}

void DedicatedServer::loop() {
  int64_t trainers = serving_.weights_version();
  bool final = false;
  for (;;) {
    int64_t ctrl[2] = {0, 0};  // {stop, live version}, decided by the leader
    if (rank_ == 0) {
      WeightSync::Announcement a;
      if (sync_.poll_announcement(&a)) {
        trainers = std::max(trainers, a.version);
        final = final || a.final;
      }
      const int64_t staged = sync_.poll();
      const int64_t live = std::max(serving_.weights_version(), staged);
      ctrl[0] = final && staged < 0 && serving_.weights_version() >= trainers;
      ctrl[1] = live;
      const int64_t behind = std::max<int64_t>(0, trainers - serving_.weights_version());
      stats_.max_staleness = std::max(stats_.max_staleness, behind);
      stats_.staleness_sum += static_cast<double>(behind);
    }
    if (size_ > 1) TANDEM_MPI_CHECK(MPI_Bcast(ctrl, 2, MPI_INT64_T, 0, comm_));
    if (ctrl[0]) break;
    ++stats_.loops;
    WindowRequest w;
    w.live_version = ctrl[1];
    w.refresh = [this] { sync_.flip(); };
    w.batch_budget = 1.0;  // the ranks serve only: batch work is never held back
    w.eager_refresh = true;
    w.training_version = trainers;
    w.weight_syncs = sync_.stats().syncs;
    w.max_steps = 1;  // look for newer weights between every two engine steps
    const WindowReport r = run_window(front_, exec_, w, pacing_);
    trainers = std::max(trainers, serving_.weights_version());  // the data may beat the announcement
    stats_.windows += r.steps > 0;
    stats_.steps += r.steps;
    if (rank_ == 0 && r.steps == 0 && !r.refreshed) front_.wait_for_work(0.002);
  }
  front_.stop_accepting();
  WindowRequest drain;
  drain.live_version = serving_.weights_version();
  drain.refresh = [this] { sync_.flip(); };
  drain.batch_budget = 1.0;
  drain.drain = true;
  drain.training_version = trainers;
  const WindowReport r = run_window(front_, exec_, drain, pacing_);
  stats_.steps += r.steps;
  front_.request_stop();
  serve_loop(front_, exec_);  // the leader fails what is left with ShuttingDown and broadcasts Stop
}

}  // namespace tandem::serve
