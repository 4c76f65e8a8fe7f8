// CPU reference for kernels/adamw.h: one AdamW step on a flat parameter range.
//
// Contract (torch.optim.AdamW): with g = grad * grad_scale,
//   param *= 1 - lr * weight_decay                       (decoupled decay, pre-update param)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// Bias corrections are computed once in double. Elements run in parallel (OpenMP, SIMD).
#include <cmath>

#include "kernels/adamw.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n,
                const AdamWHyper& h) {
  TANDEM_CHECK(h.step >= 1, "adamw step must be >= 1, got {}", h.step);
  TANDEM_CHECK(h.beta1 >= 0.0f && h.beta1 < 1.0f && h.beta2 >= 0.0f && h.beta2 < 1.0f,
               "adamw betas must lie in [0, 1): beta1 {} beta2 {}", h.beta1, h.beta2);
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const float step_size = static_cast<float>(static_cast<double>(h.lr) / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float decay = 1.0f - h.lr * h.weight_decay;
  const float b1 = h.beta1, b2 = h.beta2, eps = h.eps, gs = h.grad_scale;
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = param[i] * decay;
    param[i] = p - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace tandem::kernels::cpu
