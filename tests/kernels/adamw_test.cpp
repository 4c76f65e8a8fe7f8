// Tests for kernels/adamw.h on the CPU backend: three AdamW steps against a straightforward
// scalar double-precision reference of torch.optim.AdamW (decay on the pre-update parameter,
// bias corrections, grad_scale), on a small and a multi-threaded size.
#include "kernels/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

// One step of torch.optim.AdamW for a single element, in double.
void reference_step(double& p, double grad, double& m, double& v, const AdamWHyper& h) {
  const double g = grad * h.grad_scale;
  p *= 1.0 - double(h.lr) * h.weight_decay;
  m = h.beta1 * m + (1.0 - h.beta1) * g;
  v = h.beta2 * v + (1.0 - h.beta2) * g * g;
  const double bc1 = 1.0 - std::pow(double(h.beta1), double(h.step));
  const double bc2 = 1.0 - std::pow(double(h.beta2), double(h.step));
  p -= double(h.lr) / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + h.eps);
}

TEST(AdamW, ThreeStepsMatchScalarReference) {
  auto be = make_cpu_backend(2);
  for (int64_t n : {int64_t{1000}, int64_t{200003}}) {
    Tensor p = random_tensor(*be, {n}, 1), m = be->zeros({n}), v = be->zeros({n});
    std::vector<double> rp(p.f32(), p.f32() + n), rm(n, 0.0), rv(n, 0.0);
    AdamWHyper h;
    h.lr = 1e-2f;
    h.beta1 = 0.9f;
    h.beta2 = 0.95f;
    h.eps = 1e-8f;
    h.weight_decay = 0.1f;
    h.grad_scale = 0.5f;
    for (int64_t step = 1; step <= 3; ++step) {
      // Gradients of mixed scale, including tiny ones where eps matters.
      Tensor g = random_tensor(*be, {n}, 10 + static_cast<uint32_t>(step));
      for (int64_t i = 0; i < n; i += 7) g.f32()[i] *= 1e-6f;
      h.step = step;
      adamw_step(*be, p, g, m, v, h);
      for (int64_t i = 0; i < n; ++i) reference_step(rp[i], g.f32()[i], rm[i], rv[i], h);
      // Updates are ~lr = 1e-2 per step; fp32 keeps them to ~1e-7 absolute. The decay term
      // alone is lr * wd * |p| ~ 1e-3, so a wrong order or a missing correction fails.
      // m and v are sums of terms up to 0.05 and 0.0125 that may cancel: their absolute
      // tolerance is a few fp32 ulps of those terms.
      const std::string at = "n " + std::to_string(n) + " step " + std::to_string(step);
      TANDEM_EXPECT_CLOSE(p.f32(), rp.data(), n, 1e-6, 1e-6, at + " param");
      TANDEM_EXPECT_CLOSE(m.f32(), rm.data(), n, 2e-8, 1e-6, at + " m");
      TANDEM_EXPECT_CLOSE(v.f32(), rv.data(), n, 5e-9, 1e-6, at + " v");
    }
  }
}

TEST(AdamW, RejectsStepZero) {
  std::vector<float> p(4), g(4), m(4), v(4);
  AdamWHyper h;
  h.step = 0;
  EXPECT_THROW(cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), 4, h), Error);
}

}  // namespace
}  // namespace tandem::kernels
