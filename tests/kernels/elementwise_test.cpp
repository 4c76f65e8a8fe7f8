// Tests for kernels/elementwise.h on the CPU backend: add (with aliasing), add_inplace,
// scale_inplace, and sum_squares against a double loop, its gradient 2x by central finite
// differences, and its run-to-run determinism.
#include "kernels/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

TEST(Elementwise, AddAndScaleAreExactFp32) {
  auto be = make_cpu_backend(2);
  for (int64_t n : {int64_t{17}, int64_t{300001}}) {
    Tensor a = random_tensor(*be, {n}, 1), b = random_tensor(*be, {n}, 2);
    const std::vector<float> av = testing::to_vector(a), bv = testing::to_vector(b);
    Tensor out = be->empty({n});
    add(*be, out, a, b);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out.f32()[i], av[i] + bv[i]) << "add " << i;
    add_inplace(*be, a, b);  // out aliases a
    EXPECT_EQ(testing::to_vector(a), testing::to_vector(out));
    add(*be, b, a, b);  // out aliases b
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b.f32()[i], out.f32()[i] + bv[i]) << "alias b " << i;
    scale_inplace(*be, out, -0.37f);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(out.f32()[i], (av[i] + bv[i]) * -0.37f) << "scale " << i;
  }
}

TEST(Elementwise, SumSquaresMatchesDoubleAndIsDeterministic) {
  auto be = make_cpu_backend(2);
  for (int64_t n : {int64_t{0}, int64_t{5}, int64_t{1000003}}) {
    Tensor x = random_tensor(*be, {n}, 3, -3.0f, 3.0f);
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += double(x.f32()[i]) * x.f32()[i];
    const double got = sum_squares(*be, x);
    EXPECT_NEAR(got, ref, 1e-12 * std::max(1.0, ref)) << "n " << n;
    EXPECT_EQ(sum_squares(*be, x), got) << "same inputs, same threads, same result";
  }
}

// d/dx_i sum(x^2) = 2 x_i. sum_squares is exact in double up to ~1e-16 relative; eps 1e-2
// central differences of a quadratic are exact, so the tolerance is tight: atol 1e-6 + rtol 1e-6.
TEST(Elementwise, SumSquaresGradcheck) {
  auto be = make_cpu_backend(2);
  const int64_t n = 200;
  Tensor x = random_tensor(*be, {n}, 4);
  std::vector<float> grad(n);
  for (int64_t i = 0; i < n; ++i) grad[i] = 2.0f * x.f32()[i];
  testing::GradCheckOptions opt;
  opt.eps = 1e-2f;
  opt.atol = 1e-6;
  opt.rtol = 1e-6;
  testing::expect_gradient(
      "sum_squares", x.f32(), n, grad.data(), [&] { return sum_squares(*be, x); }, opt);
}

}  // namespace
}  // namespace tandem::kernels
