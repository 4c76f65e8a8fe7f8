// Test support for communicator and mesh tests: MPI start-up for one-process GoogleTest
// binaries, host tensors, world and node-local rank/size, a (possibly shared) GPU backend.
//
// Contract: ensure_mpi() initialises MPI (MPI_THREAD_FUNNELED) on first use, so binaries whose
// other tests never touch MPI do not pay for it; MpiFinalizeEnvironment finalises it at the end
// of RUN_ALL_TESTS when it was initialised. The multi-rank main (mpi/main.cpp) initialises MPI
// itself, which ensure_mpi() then leaves alone.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "parallel/device_binding.h"
#include "runtime/core/backend.h"

namespace tandem::testing {

inline void ensure_mpi() {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  }
}

class MpiFinalizeEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Finalize();
  }
};

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

// This rank's place among the ranks of its node.
inline std::pair<int, int> local_rank_and_size() {
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  int r = 0, s = 1;
  MPI_Comm_rank(local, &r);
  MPI_Comm_size(local, &s);
  MPI_Comm_free(&local);
  return {r, s};
}
inline int local_rank() { return local_rank_and_size().first; }
inline int local_size() { return local_rank_and_size().second; }

inline Backend& host_backend() {
  static std::unique_ptr<Backend> be = make_cpu_backend(1);
  return *be;
}

// One CUDA backend per process, bound as tandem binds ranks with parallel.device_comm auto
// (round robin: ranks share a GPU when a node has fewer GPUs than ranks); nullptr on every
// rank unless every rank sees a GPU (decided collectively over MPI_COMM_WORLD on first use).
inline Backend* shared_gpu_backend() {
  static bool decided = false;
  static std::unique_ptr<Backend> be;
  if (decided) return be.get();
  decided = true;
  int mine = cuda_available() ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all) return nullptr;
  BackendOptions opts;
  opts.device = "cuda";
  opts.device_index = local_device_for(local_rank(), local_size(), cuda_device_count(), true);
  be = make_backend(opts);
  return be.get();
}

inline Tensor host_f32(const std::vector<float>& v) {
  Tensor t = host_backend().empty({static_cast<int64_t>(v.size())}, DType::F32);
  for (size_t i = 0; i < v.size(); ++i) t.f32()[i] = v[i];
  return t;
}

inline Tensor host_i32(const std::vector<int32_t>& v) {
  Tensor t = host_backend().empty({static_cast<int64_t>(v.size())}, DType::I32);
  for (size_t i = 0; i < v.size(); ++i) t.i32()[i] = v[i];
  return t;
}

template <class T>
std::vector<T> values(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

}  // namespace tandem::testing
