// CPU reference for kernels/gelu.h: GELU with the tanh approximation (GPT-2), fwd/bwd.
//
// Contract: gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Computed as
// x * sigmoid(2u) (the same function: 0.5 (1 + tanh u) = 1 / (1 + exp(-2u))), which needs one
// exp and no cancellation near u = 0; the exp is a vectorizable polynomial (relative error
// ~2e-7), so loops run SIMD under OpenMP. Aliasing out == in and din == dout is allowed.
// backward: gelu'(x) = s + 2 x s (1 - s) u'(x), with s = sigmoid(2u) and
//           u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
#include "kernels/gelu.h"

#include <algorithm>
#include <bit>
#include <cstdint>

#include "kernels/cpu/fast_math.h"

namespace tandem::kernels::cpu {

namespace {


constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCoef = 0.044715f;

}  // namespace

void gelu_forward(float* out, const float* in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float x = in[i];
    const float u = kSqrt2OverPi * (x + kCoef * x * x * x);
    out[i] = x / (1.0f + exp_f32(-2.0f * u));
  }
}

void gelu_backward(float* din, const float* in, const float* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const float x = in[i];
    const float u = kSqrt2OverPi * (x + kCoef * x * x * x);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kCoef * x * x);
    const float s = 1.0f / (1.0f + exp_f32(-2.0f * u));
    din[i] = dout[i] * (s + 2.0f * x * s * (1.0f - s) * du);
  }
}

}  // namespace tandem::kernels::cpu
