// CPU reference for kernels/adamw.h: one AdamW step on a flat parameter range.
//
// Contract (torch.optim.AdamW): with g = grad * grad_scale,
//   param *= 1 - lr * weight_decay                       (decoupled decay, pre-update param)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// Bias corrections are computed once in double. Elements run in parallel (OpenMP, SIMD).
// The sqrt argument is never negative, so this file is compiled without errno for sqrt
// (-fno-math-errno, GCC pragma): otherwise GCC keeps a scalar call path and cannot vectorize.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/adamw.h"
#include "runtime/core/error.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-math-errno")
#endif

namespace tandem::kernels::cpu {

namespace {

struct Coeffs {
  float b1, b2, eps, gs, step_size, inv_sqrt_bc2, decay;
};

// Elements [i0, i1). A plain function (not an OpenMP-outlined body) so that it is compiled
// with the no-math-errno option above and its sqrt vectorizes.
void adamw_range(float* param, const float* grad, float* m, float* v, int64_t i0, int64_t i1,
                 const Coeffs& k) {
  const Coeffs c = k;
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    const float g = grad[i] * c.gs;
    const float mi = c.b1 * m[i] + (1.0f - c.b1) * g;
    const float vi = c.b2 * v[i] + (1.0f - c.b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = param[i] * c.decay;
    param[i] = p - c.step_size * mi / (__builtin_sqrtf(vi) * c.inv_sqrt_bc2 + c.eps);
  }
}

}  // namespace

void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n,
                const AdamWHyper& h) {
  TANDEM_CHECK(h.step >= 1, "adamw step must be >= 1, got {}", h.step);
  TANDEM_CHECK(h.beta1 >= 0.0f && h.beta1 < 1.0f && h.beta2 >= 0.0f && h.beta2 < 1.0f,
               "adamw betas must lie in [0, 1): beta1 {} beta2 {}", h.beta1, h.beta2);
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const Coeffs k{h.beta1,
                 h.beta2,
                 h.eps,
                 h.grad_scale,
                 static_cast<float>(static_cast<double>(h.lr) / bc1),
                 static_cast<float>(1.0 / std::sqrt(bc2)),
                 1.0f - h.lr * h.weight_decay};
  if (n < (1 << 16)) {
    adamw_range(param, grad, m, v, 0, n, k);
    return;
  }
#pragma omp parallel
  {
    // Static split in 16-element (cache line) units.
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads(), lines = (n + 15) / 16;
    const int64_t i0 = std::min(n, lines * t / T * 16), i1 = std::min(n, lines * (t + 1) / T * 16);
    adamw_range(param, grad, m, v, i0, i1, k);
  }
}

}  // namespace tandem::kernels::cpu
