// Test support for communicator and mesh tests: MPI start-up for one-process GoogleTest
// binaries, host tensors, and world rank/size.
//
// Contract: ensure_mpi() initialises MPI (MPI_THREAD_FUNNELED) on first use, so binaries whose
// other tests never touch MPI do not pay for it; MpiFinalizeEnvironment finalises it at the end
// of RUN_ALL_TESTS when it was initialised. The multi-rank main (mpi/main.cpp) initialises MPI
// itself, which ensure_mpi() then leaves alone.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <vector>

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

inline Backend& host_backend() {
  static std::unique_ptr<Backend> be = make_cpu_backend(1);
  return *be;
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
