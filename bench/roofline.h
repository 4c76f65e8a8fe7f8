// Machine limits for the benchmarks' "bound" column, measured on the machine the benchmark
// runs on, at the vector width the build targets (kernels/cpu/simd.h):
//   - peak_gflops: fp32 FMA throughput, every thread running independent FMA chains on VF
//     registers (2 FLOP per lane per FMA);
//   - stream_gbps(footprint): an update a += s * b over two arrays that together span
//     `footprint` bytes, repeated, so the bandwidth is that of the cache level (or DRAM) a
//     kernel with that working set streams from. Bytes counted as 12 per element (2 reads,
//     1 write), the convention of the kernels' byte counts; the written line was read, so no
//     write-allocate traffic hides in it (a kernel writing fresh output also pays that, so
//     its bound is optimistic, as a bound should be).
// A kernel's bound is max(flops / peak, bytes / bandwidth, FMA-pipe lane ops / op rate): the
// last counts the multiplies and FMAs of the exp-heavy kernels (GELU, softmax, cross-entropy),
// whose work is neither useful FLOPs nor bytes, at one lane op per FMA slot (peak / 2). The header is benchmark-only; nothing in the library uses it.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/simd.h"

namespace tandem::bench {

using kernels::cpu::simd::kLanes;
using kernels::cpu::simd::VF;

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best of 10 runs of `threads` threads x 12 independent FMA chains (~8 ms each).
inline double peak_gflops(int threads) {
  constexpr int kChains = 12;
  constexpr int64_t kIters = 4 << 20;
  double best = 0.0;
  for (int rep = 0; rep < 10; ++rep) {
    float sink = 0.0f;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      VF acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = kernels::cpu::simd::splat(1.0f + 1e-3f * c);
      const VF a = kernels::cpu::simd::splat(0.999999f), b = kernels::cpu::simd::splat(1e-7f);
      for (int64_t i = 0; i < kIters; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
      }
      VF s{};
      for (int c = 0; c < kChains; ++c) s += acc[c];
      sink += kernels::cpu::simd::hsum(s);
    }
    const double secs = seconds_since(t0);
    volatile float keep = sink;
    (void)keep;
    best = std::max(best, 2.0 * kLanes * kChains * kIters * threads / secs / 1e9);
  }
  return best;
}

// Update bandwidth over a working set of `footprint` bytes, best of 5.
inline double stream_gbps(int threads, double footprint) {
  const int64_t n = std::max<int64_t>(kLanes, static_cast<int64_t>(footprint / 8.0) / kLanes * kLanes);
  std::vector<float> a(n, 0.0f), b(n, 1.0f);
  const int reps = static_cast<int>(std::clamp<double>(6e8 / (12.0 * n), 1.0, 2000.0));
  double best = 0.0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < reps; ++k) {
#pragma omp parallel for simd schedule(static) num_threads(threads)
      for (int64_t i = 0; i < n; ++i) a[i] += 1e-3f * b[i];
    }
    best = std::max(best, 12.0 * n * reps / seconds_since(t0) / 1e9);
  }
  volatile float keep = a[n / 2];
  (void)keep;
  return best;
}

// Read bandwidth: sum of a `bytes` (default 512 MiB) fp32 array with all threads (each
// thread one contiguous part as 4 streams, 4 vector chains in named registers, so neither the
// adds nor their latency limit; software prefetch 1 KiB ahead, as cpu::linear_forward_skinny
// does), best of 5 passes, GB/s. Used by kernel_bench's decode section and decode_bench.
inline double read_gbps(int threads, int64_t bytes = int64_t{512} << 20) {
  namespace simd = kernels::cpu::simd;
  constexpr int64_t kLanes = simd::kLanes, kStep = 4 * kLanes;
  const int64_t n = std::max<int64_t>(bytes / 4 / kStep, 1) * kStep;
  std::unique_ptr<float[]> a(new float[n]);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) a[i] = 1e-6f * static_cast<float>(i & 1023);  // first touch
  double best = 0;
  float sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      // This thread's contiguous part, read as 4 interleaved streams (as the skinny kernel
      // reads 4 rows of W): one stream per thread leaves DRAM bandwidth unused here.
      const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t steps = n / kStep / nt / 4, base = t * steps * 4 * kStep;
      const float* p0 = a.get() + base;
      simd::VF s0{}, s1{}, s2{}, s3{};
      for (int64_t c = 0; c < steps * kStep; c += kLanes) {
        __builtin_prefetch(p0 + c + 256, 0, 0);
        __builtin_prefetch(p0 + steps * kStep + c + 256, 0, 0);
        __builtin_prefetch(p0 + 2 * steps * kStep + c + 256, 0, 0);
        __builtin_prefetch(p0 + 3 * steps * kStep + c + 256, 0, 0);
        s0 += simd::load(p0 + c);
        s1 += simd::load(p0 + steps * kStep + c);
        s2 += simd::load(p0 + 2 * steps * kStep + c);
        s3 += simd::load(p0 + 3 * steps * kStep + c);
      }
      total += simd::hsum((s0 + s1) + (s2 + s3));
    }
    const int64_t read = n / kStep / threads / 4 * 4 * kStep * threads;  // floats summed
    best = std::max(best, 4.0 * read / (seconds_since(t0) * 1e9));
    sink += total;
  }
  volatile float keep = sink;
  (void)keep;
  return best;
}

}  // namespace tandem::bench
