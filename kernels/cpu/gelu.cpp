// CPU reference for kernels/gelu.h: GELU with the tanh approximation (GPT-2), fwd/bwd.
//
// Contract: gelu(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Computed as
// x * sigmoid(2u) (the same function: 0.5 (1 + tanh u) = 1 / (1 + exp(-2u))), which needs one
// exp and no cancellation near u = 0; the exp is kernels/cpu/simd.h's polynomial (relative
// error ~2e-7), and the loops are explicit SIMD split over OpenMP threads. Aliasing out == in
// and din == dout is allowed.
// backward: gelu'(x) = s + 2 x s (1 - s) u'(x), with s = sigmoid(2u) and
//           u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
// forward_bf16: the fp32 forward of the widened input (exact), rounded to bf16.
#include "kernels/gelu.h"

#include <cstdint>
#include <vector>

#include "kernels/cast.h"

#include "kernels/cpu/simd.h"

namespace tandem::kernels::cpu {

namespace {

using simd::kLanes;
using simd::VF;

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCoef = 0.044715f;

inline VF gelu_v(VF x) {
  const VF u = kSqrt2OverPi * (x + kCoef * x * x * x);
  return x / (1.0f + simd::vexp(-2.0f * u));
}

inline VF gelu_grad_v(VF x, VF g) {
  const VF u = kSqrt2OverPi * (x + kCoef * x * x * x);
  const VF du = kSqrt2OverPi * (1.0f + 3.0f * kCoef * x * x);
  const VF s = 1.0f / (1.0f + simd::vexp(-2.0f * u));
  return g * (s + 2.0f * x * s * (1.0f - s) * du);
}

// Applies f(i, len) to whole vectors of [0, n) on the OpenMP threads (for large n), then to
// the tail. Inlined, len is the constant kLanes in the parallel loop.
template <class F>
void for_each_vector(int64_t n, F f) {
  const int64_t nv = n / kLanes;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t b = 0; b < nv; ++b) f(b * kLanes, int64_t{kLanes});
  if (nv * kLanes < n) f(nv * kLanes, n - nv * kLanes);
}

}  // namespace

void gelu_forward(float* out, const float* in, int64_t n) {
  for_each_vector(n, [=](int64_t i, int64_t len) {
    simd::store_n(out + i, gelu_v(simd::load_n(in + i, len, 0.0f)), len);
  });
}

void gelu_forward_bf16(bf16* out, const bf16* in, int64_t n) {
  std::vector<float> wide(static_cast<size_t>(n));
  bf16_to_f32(wide.data(), in, n);
  gelu_forward(wide.data(), wide.data(), n);
  f32_to_bf16(out, wide.data(), n);
}

void gelu_backward(float* din, const float* in, const float* dout, int64_t n) {
  for_each_vector(n, [=](int64_t i, int64_t len) {
    const VF x = simd::load_n(in + i, len, 0.0f), g = simd::load_n(dout + i, len, 0.0f);
    simd::store_n(din + i, gelu_grad_v(x, g), len);
  });
}

}  // namespace tandem::kernels::cpu
