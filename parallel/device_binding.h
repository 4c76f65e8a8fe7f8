// Device binding: which CUDA device a rank uses, from its node-local rank (MpiEnv::local_rank),
// so one binary binds the same way under mpirun and srun.
//
// Contract: local_device_for(local_rank, local_size, device_count, share) with device_count =
// the devices this process sees (after CUDA_VISIBLE_DEVICES):
//   - device_count >= local_size: device local_rank (one GPU per rank; spare GPUs stay idle).
//   - device_count == 1 and local_size > 1: device 0. This is the per-rank visibility case
//     (srun --gpus-per-task=1, or a wrapper setting CUDA_VISIBLE_DEVICES per rank), where each
//     rank sees only its own GPU, or a single GPU that the ranks share. Sharing is found by the
//     Mesh (parallel/device_comm.h): parallel.device_comm auto then stages device tensors
//     through host memory and MPI; nccl refuses with a ConfigError.
//   - 1 < device_count < local_size: with `share` (parallel.device_comm auto or staged) round
//     robin, device local_rank % device_count (the ranks on one GPU then move device tensors
//     staged); without it (nccl) ConfigError: NCCL refuses two ranks of a group on one GPU; the
//     message says how many ranks per node fit.
//   - device_count < 1, or local_rank outside [0, local_size): ConfigError / Error with values.
#pragma once

namespace tandem {

int local_device_for(int local_rank, int local_size, int device_count, bool share = false);

}  // namespace tandem
