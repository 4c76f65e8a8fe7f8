// The I/O watchdog thread (contract in io_watchdog.h).
#include "parallel/io_watchdog.h"

#include <mpi.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>

namespace tandem {

IoWatchdog::IoWatchdog(std::string what, double timeout_s, std::function<std::string()> diagnose)
    : what_(std::move(what)), timeout_s_(timeout_s), diagnose_(std::move(diagnose)) {
  if (timeout_s_ <= 0) return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  thread_ = std::thread([this] { watch(); });
}

IoWatchdog::~IoWatchdog() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void IoWatchdog::phase(const std::string& name) {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    phase_ = name;
    armed_ = true;
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(timeout_s_));
  }
  cv_.notify_all();
}

void IoWatchdog::note(const std::string& text) {
  std::lock_guard<std::mutex> lock(mu_);
  note_ = text;
}

void IoWatchdog::idle() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }
  cv_.notify_all();
}

void IoWatchdog::watch() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (!armed_) {
      cv_.wait(lock);
      continue;
    }
    const auto deadline = deadline_;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && armed_ && !stop_ &&
        deadline_ == deadline)
      fire(phase_, note_);
  }
}

void IoWatchdog::fire(const std::string& phase, const std::string& note) {
  std::string msg = fmt::format("{}: {} did not finish within {} s (parallel.timeout_s)", what_, phase, timeout_s_);
  if (!note.empty()) msg += "; " + note;
  if (diagnose_) {
    const std::string d = diagnose_();
    if (!d.empty()) msg += "; " + d;
  }
  spdlog::critical("rank {}: {}", rank_, msg);
  std::fprintf(stderr, "tandem: rank %d: %s; aborting the job (MPI_Abort, exit code %d)\n", rank_, msg.c_str(),
               kJobAbortExitCode);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, kJobAbortExitCode);
  std::abort();  // MPI_Abort does not return
}

}  // namespace tandem
