// Fast fp32 math for the CPU kernels' vectorised loops.
//
// Contract: exp_f32(x) = exp(x) in fp32 by the Cephes expf scheme (x = n ln2 + r, a degree-6
// polynomial in r, times 2^n). Relative error ~2e-7 on [-87.3, 88.3]; below that it returns 0,
// above it +inf; NaN propagates. Branch-free, so loops calling it vectorise (it is inline).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>

namespace tandem::kernels::cpu {

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

}  // namespace tandem::kernels::cpu
