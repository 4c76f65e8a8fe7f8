// Device binding: node-local rank -> CUDA device ordinal (policy in device_binding.h).
#include "parallel/device_binding.h"

#include "runtime/core/error.h"

namespace tandem {

int local_device_for(int local_rank, int local_size, int device_count, bool share) {
  TANDEM_CHECK(local_size >= 1 && local_rank >= 0 && local_rank < local_size,
               "node-local rank {} outside [0, {})", local_rank, local_size);
  if (device_count < 1)
    throw ConfigError(fmt::format(
        "train.device is cuda but this rank (node-local rank {} of {}) sees no CUDA device; "
        "check CUDA_VISIBLE_DEVICES or use train.device: cpu",
        local_rank, local_size));
  if (device_count >= local_size) return local_rank;
  if (device_count == 1) return 0;  // per-rank visibility (srun --gpus-per-task=1), or sharing
  if (share) return local_rank % device_count;
  throw ConfigError(fmt::format(
      "{} ranks run on this node but only {} CUDA devices are visible: ranks would share GPUs, "
      "which NCCL does not allow within a group (parallel.device_comm = nccl); start at most {} "
      "ranks per node (e.g. mpirun --map-by ppr:{}:node, srun --ntasks-per-node={}), give each "
      "rank its own device, or set parallel.device_comm: staged",
      local_size, device_count, device_count, device_count, device_count));
}

}  // namespace tandem
