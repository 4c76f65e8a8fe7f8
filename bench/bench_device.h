// The device side of the benchmark binaries that run on either backend (train_bench,
// decode_bench): the backend for --device, the --precision values a build accepts, and, on a
// GPU, the device memory bandwidth that decode's weight-read bound uses.
//
// Contract: make_bench_backend returns the backend or throws tandem::Error (no GPU visible,
// a build without CUDA); the caller prints it and exits non-zero. A precision this build does
// not train in is refused by the caller with kRefusedExit and a line starting
// "refused: --precision", which bench/gpu/check.sh reads to fall back to fp32 visibly.
// device_copy_gbps allocates two buffers of `bytes` on the backend for its duration.
// Benchmark-only; nothing in the library uses this header.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/core/backend.h"

namespace tandem::bench {

constexpr int kRefusedExit = 3;

// The precisions train_bench trains in (train.precision: fp32 | bf16).
inline bool precision_supported(const std::string& p) { return p == "fp32" || p == "bf16"; }

inline std::unique_ptr<Backend> make_bench_backend(const std::string& device, int threads) {
  BackendOptions o;
  o.device = device;
  o.threads = threads;
  return make_backend(o);
}

// Device-to-device copy of `bytes` (best of 5 after one warm-up), counting bytes read and
// written: the memory bandwidth a kernel that streams its operands once can reach.
inline double device_copy_gbps(Backend& be, int64_t bytes = int64_t{1} << 30) {
  const int64_t n = bytes / 4;
  Tensor a = be.zeros({n}), b = be.empty({n});
  double best = 0.0;
  for (int rep = 0; rep < 6; ++rep) {
    be.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    be.copy(b, a);
    be.synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::max(best, 2.0 * 4.0 * static_cast<double>(n) / s / 1e9);
  }
  return best;
}

}  // namespace tandem::bench
