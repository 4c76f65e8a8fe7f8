// Tests for kernels/gelu.h on the CPU backend: forward against the tanh formula in double
// (including large |x| and in-place use), and the backward by central finite differences.
#include "kernels/gelu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

double gelu_ref(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

TEST(Gelu, ForwardMatchesTanhFormula) {
  auto be = make_cpu_backend(2);
  const int64_t n = 100000;  // multi-threaded path
  Tensor in = random_tensor(*be, {n}, 1, -8.0f, 8.0f);
  const float extremes[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 30.0f, -30.0f, 1e4f, -1e4f};
  for (size_t i = 0; i < std::size(extremes); ++i) in.f32()[i] = extremes[i];
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = gelu_ref(in.f32()[i]);
  Tensor out = be->empty({n});
  gelu_forward(*be, out, in);
  TANDEM_EXPECT_CLOSE(out.f32(), ref.data(), n, 1e-7, 2e-6, "gelu");
  gelu_forward(*be, in, in);  // in place
  TANDEM_EXPECT_CLOSE(in.f32(), ref.data(), n, 1e-7, 2e-6, "gelu in place");
}

// L = sum(gelu(x) * R); eps 1e-3 central differences (truncation ~eps^2 |f'''| ~1e-6),
// tolerance atol 1e-3 + rtol 1e-2 is what fp32 rounding of L allows.
TEST(Gelu, BackwardGradcheck) {
  auto be = make_cpu_backend(2);
  const int64_t n = 300;
  Tensor in = random_tensor(*be, {n}, 11, -5.0f, 5.0f), R = random_tensor(*be, {n}, 12);
  Tensor out = be->empty({n});
  auto loss = [&] {
    gelu_forward(*be, out, in);
    return testing::dot(out.f32(), R.f32(), n);
  };
  Tensor din = be->empty({n});
  gelu_backward(*be, din, in, R);
  testing::expect_gradient("gelu din", in.f32(), n, din.f32(), loss);

  // din may alias dout.
  Tensor alias = be->empty({n});
  be->copy(alias, R);
  gelu_backward(*be, alias, in, alias);
  EXPECT_EQ(testing::to_vector(alias), testing::to_vector(din));
}

TEST(Gelu, BackwardMatchesAnalyticDerivative) {
  auto be = make_cpu_backend(2);
  const int64_t n = 70000;
  Tensor in = random_tensor(*be, {n}, 21, -10.0f, 10.0f), dout = random_tensor(*be, {n}, 22);
  Tensor din = be->empty({n});
  gelu_backward(*be, din, in, dout);
  std::vector<double> ref(n);
  const double k = std::sqrt(2.0 / M_PI);
  for (int64_t i = 0; i < n; ++i) {
    const double x = in.f32()[i], u = k * (x + 0.044715 * x * x * x), t = std::tanh(u);
    const double d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
    ref[i] = dout.f32()[i] * d;
  }
  TANDEM_EXPECT_CLOSE(din.f32(), ref.data(), n, 1e-6, 1e-5, "gelu'");
}

}  // namespace
}  // namespace tandem::kernels
