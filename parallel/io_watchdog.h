// IoWatchdog: bounds blocking I/O that no communicator watchdog can interrupt, such as a
// collective parallel-HDF5 call (MPI-IO inside it can wait forever for a rank that took
// another path after an I/O error).
//
// Contract:
//   IoWatchdog(what, timeout_s, diagnose) watches one I/O operation of this rank (`what`, e.g.
//   "checkpoint save of out/ckpt/.step_00000004.h5.tmp"); timeout_s <= 0 disables it (no thread).
//   phase(name) starts a phase: it must end (the next phase(), idle() or the destructor) within
//   timeout_s of its start. If it does not, a thread of the watchdog's own logs and prints
//   Tandem's line
//     tandem: rank R: WHAT: PHASE did not finish within T s (parallel.timeout_s)[; NOTE]
//             [; DIAGNOSIS]; aborting the job (MPI_Abort, exit code 3)
//   and calls MPI_Abort(MPI_COMM_WORLD, kJobAbortExitCode) from that thread: the main thread
//   is blocked inside MPI, so this is the only way the job can end. DIAGNOSIS is what
//   `diagnose()` returns then (called on the watchdog's thread; it must be thread-safe, e.g.
//   free space of a file system), NOTE the last note(): context such as the failure every rank
//   agreed on before a close. idle(): no phase runs (nothing is watched until the next phase).
//   Threading: phase/note/idle from the owner's thread; the watchdog thread only reads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/mpi_env.h"

namespace tandem {

class IoWatchdog {
 public:
  IoWatchdog(std::string what, double timeout_s, std::function<std::string()> diagnose = {});
  ~IoWatchdog();
  IoWatchdog(const IoWatchdog&) = delete;
  IoWatchdog& operator=(const IoWatchdog&) = delete;

  void phase(const std::string& name);
  void note(const std::string& text);
  void idle();
  double timeout_s() const { return timeout_s_; }

 private:
  void watch();
  [[noreturn]] void fire(const std::string& phase, const std::string& note);

  const std::string what_;
  const double timeout_s_;
  const std::function<std::string()> diagnose_;
  int rank_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false, stop_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::string phase_, note_;
  std::thread thread_;
};

}  // namespace tandem
