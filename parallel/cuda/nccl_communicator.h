// NcclCommunicator: the Communicator for device (CUDA) tensors, over NCCL (CUDA builds only).
//
// Contract:
//   make_nccl_communicator(comm, name, timeout_s, ctx) is collective over `comm` (the caller
//   keeps it; a duplicate is kept for bootstrap and barrier). Bootstrap: every rank publishes
//   (host, PCI bus id) and a repeated pair throws ConfigError on every rank (NCCL cannot put two
//   ranks of a group on one GPU); rank 0 makes the ncclUniqueId, MPI_Bcast shares it, and
//   ncclCommInitRank builds the communicator on ctx.device.
//   Streams: NCCL work runs on the communicator's own stream (non-blocking, highest priority),
//   not on the compute stream ctx.stream, so a non-blocking collective (a gradient bucket)
//   overlaps the compute queued after it. Each operation: record an event on ctx.stream and make
//   the comm stream wait for it (the operation sees every result queued before the call), queue
//   the NCCL call on the comm stream, record a completion event there. Request::wait() and the
//   blocking calls poll that event on the host with the watchdog (below) and then make
//   ctx.stream wait for it, so work queued on ctx.stream afterwards sees the result. Until then,
//   work queued on ctx.stream runs concurrently with the operation and must not write its
//   buffers or read its outputs.
//   Memory: the caching device allocator reuses a freed block for later work on ctx.stream
//   only. So every tensor handed to an operation is kept alive by the operation (its Request,
//   or the blocking call) until its completion event is seen to have fired; callers may drop
//   their own references at once. A timed-out or failed operation is stranded with its tensors
//   until the communicator is destroyed (and leaked if its event has not fired then).
//   Tensors: CUDA device memory. Reductions take f32 or i32; all_gather, broadcast, send and
//   recv move bytes (any dtype).
//   Watchdog: poll cudaEventQuery (and ncclCommGetAsyncError) with the pacing of PollBackoff
//   (parallel/watched_communicator.h); after `timeout_s` seconds counted from the wait (<= 0
//   disables it) the NCCL communicator is aborted (ncclCommAbort), the group is marked
//   unusable, and TimeoutError names the group, the operation, the bytes, the peer/root and the
//   seconds waited. An asynchronous NCCL error aborts it too and throws Error.
//   Point-to-point: NCCL has no tags; `tag` is checked (>= 0) but messages between two ranks
//   match in the order they were issued. A rank cannot send to itself. Each send/recv is its own
//   ncclGroupStart/End; batch_isend_irecv issues its transfers in one group.
//   barrier(): waits (with the watchdog) for the work queued so far on both streams, then a host
//   barrier over the MPI duplicate.
//   Aliasing as in MPI: reduce_scatter in place when out is the rank-th slice of in;
//   all_gather in place when in is the rank-th slice of out. stats() counts as MpiCommunicator.
//   Checked NCCL calls keep file:line and the call text (TANDEM_NCCL_CHECK).
#pragma once

#include <mpi.h>
#include <nccl.h>

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "runtime/core/error.h"

namespace tandem {

struct CudaContext;

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, std::string name,
                                                     double timeout_s, CudaContext& ctx);

}  // namespace tandem

#define TANDEM_NCCL_CHECK(call)                                                            \
  do {                                                                                     \
    ncclResult_t tandem_nccl_r_ = (call);                                                  \
    if (tandem_nccl_r_ != ncclSuccess) [[unlikely]]                                        \
      ::tandem::detail::throw_check(                                                       \
          __FILE__, __LINE__, #call,                                                       \
          fmt::format("NCCL error {}: {} ({})", static_cast<int>(tandem_nccl_r_),          \
                      ncclGetErrorString(tandem_nccl_r_), ncclGetLastError(nullptr)));     \
  } while (0)
