// Test support for multi-rank tests on GPUs (CUDA builds): a CUDA backend per rank when every
// rank has a GPU of its own, and host <-> device copies.
//
// Contract: device_backend_or_null() is collective over MPI_COMM_WORLD: every rank gets a
// backend on its own GPU (by node-local rank), or every rank gets nullptr (a CPU machine, or
// fewer GPUs on a node than ranks: NCCL refuses two ranks on one GPU), so tests skip alike.
#pragma once

#ifdef TANDEM_HAVE_CUDA

#include <cuda_runtime.h>
#include <mpi.h>

#include <memory>

#include "parallel/device_binding.h"
#include "runtime/core/backend.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem::testing {

inline std::unique_ptr<Backend> device_backend_or_null() {
  const auto [local_rank, local_size] = local_rank_and_size();
  int devices = 0;
  if (cuda_available()) cudaGetDeviceCount(&devices);
  int ok = devices >= local_size ? 1 : 0, all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all) return nullptr;
  BackendOptions opts;
  opts.device = "cuda";
  opts.device_index = local_device_for(local_rank, local_size, devices);
  return make_backend(opts);
}

inline Tensor to_device(Backend& be, const Tensor& host) {
  Tensor d = be.empty(host.shape(), host.dtype());
  be.copy(d, host);
  return d;
}

inline Tensor to_host(Backend& be, const Tensor& dev) {
  Tensor h = host_backend().empty(dev.shape(), dev.dtype());
  be.copy(h, dev);
  return h;
}

}  // namespace tandem::testing

#endif  // TANDEM_HAVE_CUDA
