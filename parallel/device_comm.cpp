// Device communicator choice: parsing, the shared-GPU check and the decision (device_comm.h).
#include "parallel/device_comm.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "parallel/mpi_communicator.h"
#include "runtime/core/error.h"

#ifdef TANDEM_HAVE_CUDA
#include <cuda_runtime.h>

#include "runtime/core/cuda/cuda_context.h"
#endif

namespace tandem {

DeviceComm parse_device_comm(const std::string& s) {
  if (s == "auto") return DeviceComm::Auto;
  if (s == "nccl") return DeviceComm::Nccl;
  if (s == "staged") return DeviceComm::Staged;
  throw ConfigError(
      fmt::format("parallel.device_comm = '{}': expected one of auto, nccl, staged", s));
}

const char* device_comm_name(DeviceComm c) {
  switch (c) {
    case DeviceComm::Auto: return "auto";
    case DeviceComm::Nccl: return "nccl";
    case DeviceComm::Staged: return "staged";
  }
  return "?";
}

const char* group_comm_name(GroupComm c) {
  switch (c) {
    case GroupComm::Mpi: return "mpi";
    case GroupComm::Nccl: return "nccl";
    case GroupComm::Staged: return "staged";
  }
  return "?";
}

std::optional<std::pair<int, int>> first_shared_gpu(const std::vector<std::string>& keys) {
  std::map<std::string, int> first;
  for (int r = 0; r < static_cast<int>(keys.size()); ++r) {
    auto [it, fresh] = first.emplace(keys[r], r);
    if (!fresh) return std::make_pair(it->second, r);
  }
  return std::nullopt;
}

std::vector<std::string> allgather_gpu_keys(MPI_Comm comm, const std::string& key) {
  constexpr size_t kLen = MPI_MAX_PROCESSOR_NAME + 64;  // "host|PCI bus id" always fits
  int size = 1;
  TANDEM_MPI_CHECK(MPI_Comm_size(comm, &size));
  std::vector<char> mine(kLen, '\0');
  key.copy(mine.data(), std::min(key.size(), kLen - 1));
  std::vector<char> all(kLen * static_cast<size_t>(size));
  TANDEM_MPI_CHECK(MPI_Allgather(mine.data(), static_cast<int>(kLen), MPI_CHAR, all.data(),
                                 static_cast<int>(kLen), MPI_CHAR, comm));
  std::vector<std::string> keys;
  for (int r = 0; r < size; ++r) keys.emplace_back(&all[static_cast<size_t>(r) * kLen]);
  return keys;
}

DeviceComm resolve_device_comm(MPI_Comm world, DeviceComm requested, const std::string& gpu_key) {
  if (requested == DeviceComm::Staged) return DeviceComm::Staged;
  const std::vector<std::string> keys = allgather_gpu_keys(world, gpu_key);
  const auto shared = first_shared_gpu(keys);
  if (!shared) return DeviceComm::Nccl;
  const auto [a, b] = *shared;
  if (requested == DeviceComm::Nccl)
    throw ConfigError(fmt::format(
        "parallel.device_comm = nccl, but ranks {} and {} of the group would share one GPU "
        "({}); NCCL needs one GPU per rank of a group (it refuses: \"Duplicate GPU detected\"). "
        "Start at most as many ranks per node as it has GPUs, or set parallel.device_comm: "
        "staged (or auto) to move device tensors through pinned host memory and MPI",
        a, b, keys[a]));
  spdlog::info("parallel.device_comm auto: ranks {} and {} share one GPU ({}), so the groups "
               "move device tensors through pinned host memory and MPI (staged), not NCCL",
               a, b, keys[a]);
  return DeviceComm::Staged;
}

GroupComm group_comm_for(DeviceKind device, DeviceComm resolved) {
  if (device == DeviceKind::CPU) return resolved == DeviceComm::Staged ? GroupComm::Staged : GroupComm::Mpi;
  TANDEM_CHECK(resolved != DeviceComm::Auto, "group_comm_for: resolve parallel.device_comm auto first");
  return resolved == DeviceComm::Nccl ? GroupComm::Nccl : GroupComm::Staged;
}

#ifdef TANDEM_HAVE_CUDA
std::string gpu_key(int device) {
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_len = 0;
  TANDEM_MPI_CHECK(MPI_Get_processor_name(host, &host_len));
  char bus[64] = {};
  TANDEM_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), device));
  return fmt::format("{}|{}", std::string(host, static_cast<size_t>(host_len)), bus);
}
#endif

}  // namespace tandem
