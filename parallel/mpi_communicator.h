// MpiCommunicator: the Communicator for host (CPU) tensors, over one MPI communicator.
//
// Contract:
//   make_mpi_communicator(comm, name, timeout_s) duplicates `comm` (collective over it) and owns
//   the duplicate (freed on destruction); the caller keeps `comm`. Errors on the duplicate are
//   returned, not fatal, and every MPI call is checked (TANDEM_MPI_CHECK: file:line, call text,
//   MPI's error string).
//   Tensors: CPU only; F32, I32 (and U16 for the ops that only move data). Every blocking call
//   is its non-blocking twin plus wait(); waiting is WatchedCommunicator's (watched_communicator.h):
//   poll MPI_Test(all), spin ~30 us, then sleep 50 -> 100 -> 200 us between polls (ranks are
//   often oversubscribed), and after `timeout_s` seconds (counted from the call to wait(); <= 0
//   disables the watchdog) throw TimeoutError naming the group, the operation, the bytes, the
//   peer/root (and tag) and the seconds waited.
//   On a watchdog timeout:
//     - recv/irecv, and a batch of which only receives are unfinished: the receives are
//       cancelled (MPI_Cancel, then completed or MPI_Request_free), so the group stays usable;
//       an unmatched message that arrives later stays queued.
//     - send, a batch with an unfinished send, and collectives: MPI cannot cancel them, so the
//       request is kept (with its tensors, so the buffers stay alive) and the group is marked
//       broken: every later call on it throws Error at once. The job is expected to abort
//       (launch/ calls MPI_Abort).
//   batch_isend_irecv: every MPI_Irecv, then every MPI_Isend, waited on together; a rank may
//   send to and receive from itself.
//   Aliasing: reduce_scatter may write `out` in place when `out` is the rank-th slice of `in`
//   (the rest of `in` is then unspecified); all_gather may read `in` in place when `in` is the
//   rank-th slice of `out` (the NCCL conventions). Any other overlap is an error.
//   stats(): one call per operation (per transfer of a batch); bytes = the payload this rank
//   hands over (all_reduce, broadcast: the tensor; reduce_scatter, all_gather: `in`; send: the
//   tensor; recv and barrier: 0). A Request destroyed before completion is drained: a receive
//   (or a batch whose sends are done) is cancelled, other operations are waited for with the
//   watchdog (a timeout there is logged, not thrown). A Request keeps its tensors alive until
//   it completes and must not outlive its communicator.
//   Threading: MPI_THREAD_FUNNELED; call from the thread that initialised MPI.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "runtime/core/error.h"

namespace tandem {

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name,
                                                    double timeout_s);

namespace detail {

std::string mpi_error_string(int code);

}  // namespace detail

}  // namespace tandem

#define TANDEM_MPI_CHECK(call)                                                           \
  do {                                                                                   \
    int tandem_mpi_rc_ = (call);                                                         \
    if (tandem_mpi_rc_ != MPI_SUCCESS) [[unlikely]]                                      \
      ::tandem::detail::throw_check(__FILE__, __LINE__, #call,                           \
                                    ::tandem::detail::mpi_error_string(tandem_mpi_rc_)); \
  } while (0)
