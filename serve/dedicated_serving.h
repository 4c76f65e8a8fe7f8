// serve.mode dedicated: ranks set apart for serving, fed the trainers' weights every
// serve.sync_every optimizer steps through WeightSync (serve/weight_sync.h).
//
// WeightPublisher (training ranks): a SafePointHandler. After step s (BetweenSteps) sender 0
// announces the trainers' version to the serving leaders; when sync_every versions have passed
// since the last sync and every sender's last sync has been taken, the senders pack and post
// the new weights (else the sync is skipped and the servers fall further behind; training
// never waits on serving). At every safe point it drives MPI progress of the transfers.
// begin() posts the initial (or resumed) weights and waits until the servers hold them; finish() posts the last version if it was
// not sent, waits until the servers have taken it, and announces that no version follows.
//
// DedicatedServer (serving ranks, every rank of each serving replica): begin() waits for the
// first weights; loop() then runs the engine in windows (run_window, the leader decides
// and broadcasts) with the staged version as the live one: once a newer version has fully
// arrived, admission closes, the running sequences finish on the current weights (one version
// per reply), the staged weights are unpacked between two engine steps (flip), and admission
// reopens. With nothing to do the leader sleeps until a request arrives (at most 2 ms). The
// loop ends once the trainers have announced their last version and it is served; then what
// is queued is answered and the engine stops on every rank.
// Contract: main thread (MPI FUNNELED); the replica communicator spans the serving replica,
// its rank 0 being the engine's leader.
#pragma once

#include <mpi.h>

#include <cstdint>

#include "runtime/train/safe_point.h"
#include "serve/engine_front.h"
#include "serve/engine_window.h"
#include "serve/step_executor.h"
#include "serve/weight_sync.h"

namespace tandem::serve {

struct PublisherStats {
  int64_t sync_points = 0;   // BetweenSteps points where a sync was due
  int64_t skipped = 0;       // ... of which passed because the servers had not taken the last one
  double sync_s = 0.0;       // time inside BetweenSteps points (agree + pack + post)
  double progress_s = 0.0;   // time inside the other safe points (MPI progress)
};

class WeightPublisher : public SafePointHandler {
 public:
  WeightPublisher(WeightSync& sync, int sync_every);
  void begin(int64_t version);
  void at_safe_point(const SafePoint& point) override;
  void finish(int64_t version);
  const PublisherStats& stats() const { return stats_; }

 private:
  WeightSync& sync_;
  int sync_every_;
  PublisherStats stats_;
};

struct ServerStats {
  int64_t loops = 0, windows = 0, steps = 0;
  int64_t max_staleness = 0;     // leader: the most versions behind the trainers seen
  double staleness_sum = 0.0;    // leader: summed over loop iterations (mean = / loops)
};

class DedicatedServer {
 public:
  DedicatedServer(EngineFront& front, StepExecutor& exec, ModelReplica& serving, WeightSync& sync,
                  MPI_Comm replica_comm);
  void begin();
  void loop();
  const ServerStats& stats() const { return stats_; }

 private:
  EngineFront& front_;
  StepExecutor& exec_;
  WindowPacing pacing_;  // no cap: these ranks only serve
  ModelReplica& serving_;
  WeightSync& sync_;
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  ServerStats stats_;
};

}  // namespace tandem::serve
