// Test helpers for the kernel tests: seeded random tensors, a double-precision dot product for
// scalar losses L = sum(out * R), and a central finite-difference gradient check.
//
// Contract: check_gradient perturbs x[i] in place by +-eps (restoring it afterwards), calls
// `loss` for each side, and compares (L+ - L-) / (x+ - x-) (the actually representable step)
// with analytic[i]. An element passes when |a - n| <= atol + rtol * max(|a|, |n|). It checks
// every element when n <= max_samples, else a seeded random sample. The result lists the
// worst element so a failing test prints the values involved; expect_gradient wraps it in a
// GoogleTest assertion.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/backend.h"

namespace tandem::testing {

inline void fill_uniform(float* x, int64_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < n; ++i) x[i] = dist(rng);
}

inline void fill_normal(float* x, int64_t n, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  for (int64_t i = 0; i < n; ++i) x[i] = dist(rng);
}

// A tensor from `be` filled with uniform values in [lo, hi).
inline Tensor random_tensor(Backend& be, Shape shape, uint32_t seed, float lo = -1.0f,
                            float hi = 1.0f) {
  Tensor t = be.empty(std::move(shape));
  fill_uniform(t.f32(), t.numel(), lo, hi, seed);
  return t;
}

inline std::vector<float> to_vector(const Tensor& t) {
  return std::vector<float>(t.f32(), t.f32() + t.numel());
}

// sum_i a[i] * b[i] in double: the loss L = sum(out * R) for a fixed random R.
inline double dot(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

struct GradCheckOptions {
  float eps = 1e-3f;
  double atol = 1e-3;
  double rtol = 1e-2;
  int64_t max_samples = 400;  // check every element up to this many, else a random sample
  uint32_t seed = 1234;
};

struct GradCheckResult {
  int64_t checked = 0;
  int64_t failures = 0;
  int64_t worst_index = -1;
  double worst_excess = -1.0;  // |a - n| - (atol + rtol * max(|a|, |n|)); > 0 means failure
  double worst_analytic = 0.0, worst_numeric = 0.0;
  double max_abs_err = 0.0;
  std::string summary(const std::string& name) const {
    std::ostringstream os;
    os << name << ": " << failures << " of " << checked << " elements outside tolerance; worst #"
       << worst_index << " analytic " << worst_analytic << " numeric " << worst_numeric
       << " (max abs err " << max_abs_err << ")";
    return os.str();
  }
};

inline GradCheckResult check_gradient(float* x, int64_t n, const float* analytic,
                                      const std::function<double()>& loss,
                                      const GradCheckOptions& opt = {}) {
  std::vector<int64_t> idx;
  if (n <= opt.max_samples) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    std::mt19937 rng(opt.seed);
    std::uniform_int_distribution<int64_t> pick(0, n - 1);
    for (int64_t s = 0; s < opt.max_samples; ++s) idx.push_back(pick(rng));
  }
  GradCheckResult res;
  for (int64_t i : idx) {
    const float saved = x[i];
    const float xp = saved + opt.eps, xm = saved - opt.eps;
    x[i] = xp;
    const double lp = loss();
    x[i] = xm;
    const double lm = loss();
    x[i] = saved;
    const double num = (lp - lm) / (static_cast<double>(xp) - static_cast<double>(xm));
    const double a = analytic[i];
    const double err = std::fabs(a - num);
    const double excess = err - (opt.atol + opt.rtol * std::max(std::fabs(a), std::fabs(num)));
    ++res.checked;
    if (!(excess <= 0.0)) ++res.failures;  // NaN counts as a failure
    res.max_abs_err = std::max(res.max_abs_err, err);
    if (excess > res.worst_excess || res.worst_index < 0 || std::isnan(excess)) {
      res.worst_excess = excess;
      res.worst_index = i;
      res.worst_analytic = a;
      res.worst_numeric = num;
    }
  }
  return res;
}

// GoogleTest assertion around check_gradient.
inline void expect_gradient(const std::string& name, float* x, int64_t n, const float* analytic,
                            const std::function<double()>& loss, const GradCheckOptions& opt = {}) {
  const GradCheckResult r = check_gradient(x, n, analytic, loss, opt);
  EXPECT_GT(r.checked, 0) << name;
  EXPECT_EQ(r.failures, 0) << r.summary(name) << " [eps " << opt.eps << " atol " << opt.atol
                           << " rtol " << opt.rtol << "]";
}

// Max |a - b| / (atol + rtol |b|) over n elements; <= 1 means "close". Reports the worst index.
struct CloseResult {
  double worst_ratio = 0.0;
  int64_t worst_index = -1;
  double got = 0.0, want = 0.0;
};
inline CloseResult compare(const float* a, const double* b, int64_t n, double atol, double rtol) {
  CloseResult c;
  for (int64_t i = 0; i < n; ++i) {
    const double ratio = std::fabs(a[i] - b[i]) / (atol + rtol * std::fabs(b[i]));
    if (!(ratio <= c.worst_ratio)) {  // NaN is never close
      c.worst_ratio = ratio;
      c.worst_index = i;
      c.got = a[i];
      c.want = b[i];
    }
  }
  return c;
}

// EXPECT that float array got_ matches double array want_ element-wise within atol_ + rtol_|want|.
#define TANDEM_EXPECT_CLOSE(got_, want_, n_, atol_, rtol_, what_)                                 \
  do {                                                                                            \
    const auto tandem_c_ = ::tandem::testing::compare((got_), (want_), (n_), (atol_), (rtol_));   \
    EXPECT_LE(tandem_c_.worst_ratio, 1.0)                                                         \
        << (what_) << ": element " << tandem_c_.worst_index << " got " << tandem_c_.got           \
        << " expected " << tandem_c_.want << " (atol " << (atol_) << ", rtol " << (rtol_) << ")"; \
  } while (0)

}  // namespace tandem::testing
