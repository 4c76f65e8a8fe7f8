// MpiCommunicator: the Communicator for host (CPU) tensors, over one MPI communicator.
//
// Contract:
//   make_mpi_communicator(comm, name, timeout_s) duplicates `comm` (collective over it) and owns
//   the duplicate (freed on destruction); the caller keeps `comm`. Errors on the duplicate are
//   returned, not fatal, and every MPI call is checked (TANDEM_MPI_CHECK: file:line, call text,
//   MPI's error string).
//   Tensors: CPU only; F32, I32 (and U16 for the ops that only move data). Every blocking call
//   is its non-blocking twin plus wait(); one wait routine polls MPI_Test, spins ~20 us, then
//   sleeps 50 -> 100 -> 200 us between polls (ranks are often oversubscribed), and after
//   `timeout_s` seconds (counted from the call to wait(); <= 0 disables the watchdog) throws
//   TimeoutError naming the group, the operation, the bytes, the peer/root and the seconds waited.
//   On a watchdog timeout:
//     - recv/irecv: the request is cancelled (MPI_Cancel, then completed or MPI_Request_free),
//       so the group stays usable; an unmatched message that arrives later stays queued.
//     - send and collectives: MPI cannot cancel them, so the request is kept (with its tensors,
//       so the buffers stay alive) and the group is marked broken: every later call on it throws
//       Error at once. The job is expected to abort (launch/ calls MPI_Abort).
//   Aliasing: reduce_scatter may write `out` in place when `out` is the rank-th slice of `in`
//   (the rest of `in` is then unspecified); all_gather may read `in` in place when `in` is the
//   rank-th slice of `out` (the NCCL conventions). Any other overlap is an error.
//   stats(): one call per operation; bytes = the payload this rank hands over (all_reduce,
//   broadcast: the tensor; reduce_scatter, all_gather: `in`; send: the tensor; recv and
//   barrier: 0). A Request destroyed before completion is drained: a recv is cancelled, other
//   operations are waited for with the watchdog (a timeout there is logged, not thrown).
//   A Request keeps its tensors alive until it completes and must not outlive its communicator.
//   Threading: MPI_THREAD_FUNNELED; call from the thread that initialised MPI.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "runtime/core/error.h"

namespace tandem {

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name,
                                                    double timeout_s);

namespace detail {

std::string mpi_error_string(int code);

// The watchdog's pacing, shared by the MPI and NCCL communicators: after each unsuccessful poll
// call pause(); it spins for the first kSpinSeconds, then sleeps 50, 100, 200, 200... us, and
// returns false (without pausing) once timeout_s has passed since construction (never when
// timeout_s <= 0).
class PollBackoff {
 public:
  static constexpr double kSpinSeconds = 30e-6;
  static constexpr int kFirstSleepUs = 50;
  static constexpr int kMaxSleepUs = 200;

  explicit PollBackoff(double timeout_s)
      : start_(std::chrono::steady_clock::now()), timeout_s_(timeout_s) {}
  bool pause();
  double elapsed_s() const;

 private:
  std::chrono::steady_clock::time_point start_;
  double timeout_s_;
  int sleep_us_ = kFirstSleepUs;
};

}  // namespace detail

}  // namespace tandem

#define TANDEM_MPI_CHECK(call)                                                           \
  do {                                                                                   \
    int tandem_mpi_rc_ = (call);                                                         \
    if (tandem_mpi_rc_ != MPI_SUCCESS) [[unlikely]]                                      \
      ::tandem::detail::throw_check(__FILE__, __LINE__, #call,                           \
                                    ::tandem::detail::mpi_error_string(tandem_mpi_rc_)); \
  } while (0)
