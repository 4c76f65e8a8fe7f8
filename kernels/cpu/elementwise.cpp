// CPU reference for kernels/elementwise.h: add, scale and sum of squares on flat fp32 arrays.
//
// Contract: out may alias a or b. sum_squares accumulates in double, per thread over a static
// split of the array, and adds the partial sums in thread order, so the result is the same on
// every call with the same thread count.
#include "kernels/elementwise.h"

#include <omp.h>

#include <vector>

namespace tandem::kernels::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 16;  // below this a parallel region costs more than it saves
}

void add(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void scale(float* x, float s, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

double sum_squares(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const int nt = n >= kParallelMin ? omp_get_max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(nt), 0.0);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t i0 = n * t / T, i1 = n * (t + 1) / T;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = i0; i < i1; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    partial[t] = s;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace tandem::kernels::cpu
