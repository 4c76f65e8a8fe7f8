// NcclCommunicator: the Communicator for device (CUDA) tensors, over NCCL (CUDA builds only).
//
// Contract:
//   make_nccl_communicator(comm, name, timeout_s, ctx) is collective over `comm` (the caller
//   keeps it; a duplicate is kept for bootstrap and barrier). Bootstrap: every rank publishes
//   (host, PCI bus id) and a repeated pair throws ConfigError on every rank (NCCL cannot put two
//   ranks of a group on one GPU); rank 0 makes the ncclUniqueId, MPI_Bcast shares it, and
//   ncclCommInitRank builds the communicator on ctx.device.
//   Tensors: CUDA device memory; operations are queued on ctx.stream in call order.
//   Reductions take f32 or i32; all_gather, broadcast, send and recv move bytes (any dtype).
//   Blocking calls queue the operation and wait for it, which also waits for the work queued
//   before it on ctx.stream. Waiting = record a cudaEvent after the operation and poll
//   cudaEventQuery (and ncclCommGetAsyncError) with the watchdog pacing of PollBackoff; after
//   `timeout_s` seconds counted from the wait (<= 0 disables it) the NCCL communicator is
//   aborted (ncclCommAbort), the group is marked unusable, and TimeoutError names the group,
//   the operation, the bytes, the peer/root and the seconds waited.
//   Point-to-point: NCCL has no tags; `tag` is checked (>= 0) but messages between two ranks
//   match in the order they were issued. A rank cannot send to itself. Each send/recv is its own
//   ncclGroupStart/End.
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
