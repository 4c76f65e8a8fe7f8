// Tests of the finite-difference helper itself (tests/kernels/gradcheck.h): it accepts a
// correct gradient, flags a wrong one (and names it), flags NaN, and samples large inputs.
#include "tests/kernels/gradcheck.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace tandem::testing {
namespace {

// f(x) = sum c_i sin(x_i) in double; df/dx_i = c_i cos(x_i).
struct SinProblem {
  std::vector<float> x, c, grad;
  explicit SinProblem(int64_t n) : x(n), c(n), grad(n) {
    fill_uniform(x.data(), n, -2.0f, 2.0f, 1);
    fill_uniform(c.data(), n, -1.0f, 1.0f, 2);
    for (int64_t i = 0; i < n; ++i) grad[i] = c[i] * std::cos(x[i]);
  }
  double loss() const {
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += c[i] * std::sin(double(x[i]));
    return s;
  }
};

TEST(GradCheck, AcceptsCorrectGradient) {
  SinProblem p(50);
  const GradCheckResult r = check_gradient(p.x.data(), 50, p.grad.data(), [&] { return p.loss(); });
  EXPECT_EQ(r.checked, 50);
  EXPECT_EQ(r.failures, 0) << r.summary("sin");
  EXPECT_LT(r.max_abs_err, 1e-5);
}

TEST(GradCheck, FlagsWrongGradient) {
  SinProblem p(50);
  const std::vector<float> x0 = p.x;
  p.grad[17] += 0.05f;  // beyond atol 1e-3 + rtol 1e-2 for |grad| <= 1
  p.grad[30] = NAN;
  const GradCheckResult r = check_gradient(p.x.data(), 50, p.grad.data(), [&] { return p.loss(); });
  EXPECT_EQ(r.failures, 2) << r.summary("sin");
  EXPECT_TRUE(r.worst_index == 17 || r.worst_index == 30) << r.worst_index;
  EXPECT_EQ(p.x, x0) << "inputs must be restored after perturbation";
}

TEST(GradCheck, SamplesLargeInputs) {
  SinProblem p(5000);
  GradCheckOptions opt;
  opt.max_samples = 64;
  const GradCheckResult r = check_gradient(
      p.x.data(), 5000, p.grad.data(), [&] { return p.loss(); }, opt);
  EXPECT_EQ(r.checked, 64);
  EXPECT_EQ(r.failures, 0) << r.summary("sin sampled");
}

}  // namespace
}  // namespace tandem::testing
