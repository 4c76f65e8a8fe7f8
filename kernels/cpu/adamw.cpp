// CPU reference for kernels/adamw.h: one AdamW step on a flat parameter range.
//
// Contract (torch.optim.AdamW): with g = grad * grad_scale,
//   param *= 1 - lr * weight_decay                       (decoupled decay, pre-update param)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   param -= (lr / (1 - b1^step)) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)
// Bias corrections are computed once in double. Elements run in parallel (OpenMP), 16 or 8
// at a time with AVX-512 / AVX sqrt intrinsics where available: GCC will not vectorize a
// scalar sqrt while -fmath-errno is on (the default), and the per-call flags are not ours.
#include <omp.h>

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>

#include "kernels/adamw.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

namespace {

struct Coeffs {
  float b1, b2, eps, gs, step_size, inv_sqrt_bc2, decay;
};

// One element: the update in the header's contract.
inline void adamw_one(float* param, const float* grad, float* m, float* v, int64_t i,
                      const Coeffs& c) {
  const float g = grad[i] * c.gs;
  const float mi = c.b1 * m[i] + (1.0f - c.b1) * g;
  const float vi = c.b2 * v[i] + (1.0f - c.b2) * g * g;
  m[i] = mi;
  v[i] = vi;
  param[i] = param[i] * c.decay - c.step_size * mi / (std::sqrt(vi) * c.inv_sqrt_bc2 + c.eps);
}

// Elements [i0, i1): the same arithmetic, vector-wide where the instruction set allows.
void adamw_range(float* param, const float* grad, float* m, float* v, int64_t i0, int64_t i1,
                 const Coeffs& c) {
  int64_t i = i0;
#if defined(__AVX512F__)
  using vec = __m512;
  constexpr int64_t W = 16;
  // maskz form: _mm512_sqrt_ps trips GCC 12's -Wmaybe-uninitialized via _mm512_undefined_ps.
  auto vsqrt = [](vec x) { return _mm512_maskz_sqrt_ps(static_cast<__mmask16>(0xFFFF), x); };
#define TANDEM_V(op) _mm512_##op
#elif defined(__AVX__)
  using vec = __m256;
  constexpr int64_t W = 8;
  auto vsqrt = [](vec x) { return _mm256_sqrt_ps(x); };
#define TANDEM_V(op) _mm256_##op
#endif
#ifdef TANDEM_V
  const vec b1 = TANDEM_V(set1_ps)(c.b1), nb1 = TANDEM_V(set1_ps)(1.0f - c.b1);
  const vec b2 = TANDEM_V(set1_ps)(c.b2), nb2 = TANDEM_V(set1_ps)(1.0f - c.b2);
  const vec gs = TANDEM_V(set1_ps)(c.gs), eps = TANDEM_V(set1_ps)(c.eps);
  const vec step = TANDEM_V(set1_ps)(c.step_size), ibc2 = TANDEM_V(set1_ps)(c.inv_sqrt_bc2);
  const vec decay = TANDEM_V(set1_ps)(c.decay);
  for (; i + W <= i1; i += W) {
    const vec g = TANDEM_V(mul_ps)(TANDEM_V(loadu_ps)(grad + i), gs);
    const vec mi =
        TANDEM_V(add_ps)(TANDEM_V(mul_ps)(b1, TANDEM_V(loadu_ps)(m + i)), TANDEM_V(mul_ps)(nb1, g));
    const vec vi = TANDEM_V(add_ps)(TANDEM_V(mul_ps)(b2, TANDEM_V(loadu_ps)(v + i)),
                                    TANDEM_V(mul_ps)(TANDEM_V(mul_ps)(nb2, g), g));
    TANDEM_V(storeu_ps)(m + i, mi);
    TANDEM_V(storeu_ps)(v + i, vi);
    const vec denom = TANDEM_V(add_ps)(TANDEM_V(mul_ps)(vsqrt(vi), ibc2), eps);
    const vec p = TANDEM_V(mul_ps)(TANDEM_V(loadu_ps)(param + i), decay);
    const vec update = TANDEM_V(div_ps)(TANDEM_V(mul_ps)(step, mi), denom);
    TANDEM_V(storeu_ps)(param + i, TANDEM_V(sub_ps)(p, update));
  }
#undef TANDEM_V
#endif
  for (; i < i1; ++i) adamw_one(param, grad, m, v, i, c);
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
