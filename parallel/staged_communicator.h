// StagedCommunicator: the Communicator for a backend's tensors that moves them through host
// memory and MPI. It is the device communicator when NCCL cannot be used: ranks of a group
// that share one GPU (NCCL refuses them: "Duplicate GPU detected"), see parallel/device_comm.h.
//
// Contract:
//   make_staged_communicator(comm, name, timeout_s, backend) is collective over `comm`: it
//   builds an MpiCommunicator over `comm` (which keeps its own duplicate; the caller keeps
//   `comm`) and runs every operation through it, so its checks, watchdog, error messages and
//   stats are the MPI communicator's, unchanged.
//   Tensors: those of `backend` (device tensors on CUDA; on the CPU backend host tensors, which
//   runs the same staging with memcpy). Each operation
//     1. copies the tensor it sends into a fresh host tensor from backend.host_allocator()
//        (pinned on CUDA) with Backend::copy: stream-ordered after all work queued on the
//        backend's stream, and complete when the call returns;
//     2. runs the MPI operation on the host tensors;
//     3. once that completes, copies the host result into the tensor with Backend::copy
//        (complete on return, so work queued afterwards on the stream sees it).
//   Blocking calls do all three. Non-blocking calls do 1 and 2 at the call and 3 in the
//   Request's test()/wait() that sees the completion: as with every Request, the tensor must
//   not be used before then. A Request dropped before completion is drained like an MPI one:
//   collectives and sends are waited for (a collective's result is copied back); a receive
//   that has not completed is cancelled and its tensor left unchanged.
//   broadcast copies down only on the root and up only on the others; isend copies nothing
//   back; irecv copies nothing down.
//   Aliasing as MPI and NCCL: reduce_scatter in place when out is the rank-th slice of in,
//   all_gather in place when in is the rank-th slice of out. The host tensors reproduce the
//   overlap, so the MPI communicator checks it; an overlap that is not a slice is an Error.
//   barrier(): synchronises the backend's stream, then an MPI barrier.
//   stats(): one call per operation with the bytes the MPI communicator counted for it.
//   Cost: each operation synchronises the host with the stream and crosses PCIe twice; it is
//   for correctness runs on shared GPUs, NCCL is for speed.
//   Lifetime and threading: a Request must not outlive its communicator; the backend must
//   outlive both. MPI_THREAD_FUNNELED, as MpiCommunicator.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "runtime/core/backend.h"

namespace tandem {

std::unique_ptr<Communicator> make_staged_communicator(MPI_Comm comm, std::string name,
                                                       double timeout_s, Backend& backend);

}  // namespace tandem
