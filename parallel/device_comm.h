// Device communicator choice (`parallel.device_comm`): which Communicator a Mesh gives its
// groups for the backend's tensors.
//
// Contract:
//   DeviceComm  auto | nccl | staged, as written in the config (parse_device_comm throws
//               ConfigError naming parallel.device_comm for anything else).
//   GroupComm   what a mesh's groups use: MPI (host tensors), NCCL, or staged (host copies +
//               MPI, parallel/staged_communicator.h).
//   first_shared_gpu(keys)  the first pair of ranks (i < j) whose GPU keys are equal, if any.
//   allgather_gpu_keys(comm, key)  every rank's key, in rank order (collective over `comm`;
//     keys are cut to MPI_MAX_PROCESSOR_NAME + 63 characters, so no rank throws before it).
//   resolve_device_comm(world, requested, gpu_key)  for a CUDA backend; collective over
//     `world` except for `staged` (one MPI_Allgather of every rank's gpu_key, "host|PCI bus
//     id"), and the same answer on every rank. The world is itself one of a mesh's groups, so
//     "the ranks of every group have distinct GPUs" means: no two ranks share one.
//       staged  -> Staged.
//       nccl    -> Nccl when no two ranks share a GPU; else ConfigError naming
//                  parallel.device_comm, the two ranks and the GPU (NCCL refuses them:
//                  "Duplicate GPU detected"), and the way out (parallel.device_comm: staged).
//       auto    -> Nccl when no two ranks share a GPU; else Staged, with a log line (info, so
//                  world rank 0 prints it) naming the ranks that share.
//   group_comm_for(device, resolved)  CPU backends use MPI whatever the choice, except that
//     staged stages anyway (a CPU test of the staged path); CUDA backends use `resolved`.
//   gpu_key(device)  "host|PCI bus id" of CUDA device `device` on this rank (CUDA builds).
#pragma once

#include <mpi.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/tensor.h"

namespace tandem {

enum class DeviceComm { Auto, Nccl, Staged };
enum class GroupComm { Mpi, Nccl, Staged };

DeviceComm parse_device_comm(const std::string& s);
const char* device_comm_name(DeviceComm c);
const char* group_comm_name(GroupComm c);

std::optional<std::pair<int, int>> first_shared_gpu(const std::vector<std::string>& keys);
std::vector<std::string> allgather_gpu_keys(MPI_Comm comm, const std::string& key);

DeviceComm resolve_device_comm(MPI_Comm world, DeviceComm requested, const std::string& gpu_key);

GroupComm group_comm_for(DeviceKind device, DeviceComm resolved);

#ifdef TANDEM_HAVE_CUDA
std::string gpu_key(int device);
#endif

}  // namespace tandem
