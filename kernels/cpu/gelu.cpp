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

namespace tandem::kernels::cpu {

namespace {

// exp(x) in fp32, Cephes expf scheme: x = n ln2 + r, degree-6 polynomial in r, times 2^n.
// Relative error ~2e-7 on [-87.3, 88.3]; below that returns 0, above it +inf; NaN propagates.
// (Same helper as in attention.cpp and cross_entropy.cpp: each file keeps its own copy so the
// compiler can inline it into SIMD loops.)
inline float exp_f32(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.37626f;
  const float xc = std::min(kHi, std::max(kLo, x));  // NaN -> kLo: keeps the int cast defined
  const float t = xc * 1.44269504088896341f + 12582912.0f;  // round to nearest via 1.5*2^23
  const float fn = t - 12582912.0f;
  const float r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(fn) + 127) << 23);
  float e = y * scale;
  e = x < kLo ? 0.0f : e;
  e = x > kHi ? __builtin_inff() : e;
  return x != x ? x : e;
}

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
