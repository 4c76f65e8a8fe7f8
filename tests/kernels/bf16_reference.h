// Test support for the mixed-precision (bf16) kernels: random bf16 tensors, widening to fp32,
// a double-precision GEMM of bf16 inputs, and the error bounds the tests state.
//
// Error model (what the tolerances are derived from, never guessed):
//   - bf16 keeps 8 significant bits: one unit in the last place is at most 2^-7 |x|, so rounding
//     to nearest moves x by at most 2^-8 |x|, and two roundings of nearly equal values differ
//     by at most one unit.
//   - a product of two bf16 numbers is exact in fp32 (8 + 8 significant bits <= 24), so a bf16
//     GEMM with fp32 accumulation differs from the exact sum of its products only by the K
//     additions: |err| <= gamma(K) * sum_k |a_ik b_kj| with gamma(K) = K u / (1 - K u). We take
//     u = 2^-23, twice fp32's unit roundoff, because tensor-core adders may truncate instead of
//     round; the same bound then covers any summation order (OpenBLAS, cuBLASLt, split-K).
// Header-only: tests/ has no library target.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cast.h"
#include "runtime/core/backend.h"

namespace tandem::testing {

constexpr double kBf16Unit = 1.0 / 128.0;  // 2^-7: one bf16 unit relative to |x| (at most)
constexpr double kAccUnit = 1.0 / 8388608.0;  // 2^-23: u of the accumulation bound above

inline double gamma_acc(int64_t K) {
  const double ku = static_cast<double>(K) * kAccUnit;
  return ku / (1.0 - ku);
}

// A CPU bf16 tensor of values uniform in [lo, hi), rounded to bf16.
inline Tensor random_bf16(Backend& cpu, Shape shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Tensor f = cpu.empty(shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = d(rng);
  return kernels::to_bf16(cpu, f);
}

// The values of a host tensor (f32 or bf16) as doubles.
inline std::vector<double> widen(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i)
    out[i] = t.dtype() == DType::BF16 ? bf16_to_f32(t.data<bf16>()[i]) : t.f32()[i];
  return out;
}

// op(A) op(B) in double, with sum |a| |b| per element (the bound's scale). A, B host tensors.
struct GemmRef {
  int64_t M = 0, N = 0, K = 0;
  std::vector<double> value, absum;
};

inline GemmRef gemm_ref(const Tensor& A, bool ta, const Tensor& B, bool tb) {
  GemmRef r;
  r.M = ta ? A.dim(1) : A.dim(0);
  r.K = ta ? A.dim(0) : A.dim(1);
  r.N = tb ? B.dim(0) : B.dim(1);
  const std::vector<double> a = widen(A), b = widen(B);
  r.value.assign(static_cast<size_t>(r.M * r.N), 0.0);
  r.absum.assign(static_cast<size_t>(r.M * r.N), 0.0);
  for (int64_t i = 0; i < r.M; ++i)
    for (int64_t j = 0; j < r.N; ++j) {
      double s = 0.0, m = 0.0;
      for (int64_t k = 0; k < r.K; ++k) {
        const double p = (ta ? a[k * r.M + i] : a[i * r.K + k]) * (tb ? b[j * r.K + k] : b[k * r.N + j]);
        s += p;
        m += std::fabs(p);
      }
      r.value[i * r.N + j] = s;
      r.absum[i * r.N + j] = m;
    }
  return r;
}

// GPT-2's GELU (tanh form) and its derivative, in double.
inline double gelu_ref(double x) {
  const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(u));
}
inline double gelu_grad_ref(double x) {
  const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  const double t = std::tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3 * 0.044715 * x * x);
}

// Checks |got[i] - want[i]| <= bound[i] everywhere; reports the count and the worst ratio.
inline void expect_within(const std::vector<double>& got, const std::vector<double>& want,
                          const std::vector<double>& bound, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(got.size(), bound.size()) << what;
  int64_t bad = 0, worst_i = -1;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    const double ratio = bound[i] > 0 ? err / bound[i] : (err > 0 ? INFINITY : 0.0);
    if (!(err <= bound[i])) ++bad;
    if (!(ratio <= worst)) worst = ratio, worst_i = static_cast<int64_t>(i);
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.size()
                    << " elements outside their bound; worst at " << worst_i << ": got "
                    << (worst_i >= 0 ? got[worst_i] : 0) << " want " << (worst_i >= 0 ? want[worst_i] : 0)
                    << " bound " << (worst_i >= 0 ? bound[worst_i] : 0) << " (err/bound " << worst << ")";
}

}  // namespace tandem::testing
