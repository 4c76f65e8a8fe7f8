// Device binding: which CUDA device a rank uses, from its node-local rank (MpiEnv::local_rank),
// so one binary binds the same way under mpirun and srun.
//
// Contract: local_device_for(local_rank, local_size, device_count) with device_count = the
// devices this process sees (after CUDA_VISIBLE_DEVICES):
//   - device_count >= local_size: device local_rank (one GPU per rank; spare GPUs stay idle).
//   - device_count == 1 and local_size > 1: device 0. This is the per-rank visibility case
//     (srun --gpus-per-task=1, or a wrapper setting CUDA_VISIBLE_DEVICES per rank), where each
//     rank sees only its own GPU. If the ranks really share one physical GPU, the NCCL
//     bootstrap detects it (two ranks with one PCI bus id on a host) and throws ConfigError.
//   - 1 < device_count < local_size: ConfigError. Round-robin would put two ranks on one GPU,
//     which NCCL refuses inside a communicator; the message says how many ranks per node fit.
//   - device_count < 1, or local_rank outside [0, local_size): ConfigError / Error with values.
// Sharing a GPU between ranks is deliberately not offered: it only ever works for CPU-side
// tests, which use device cpu instead.
#pragma once

namespace tandem {

int local_device_for(int local_rank, int local_size, int device_count);

}  // namespace tandem
