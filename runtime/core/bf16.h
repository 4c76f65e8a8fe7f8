// bf16: the bfloat16 storage type (sign, 8 exponent bits, 7 mantissa bits: the top half of an
// IEEE fp32), and its host conversions.
//
// Contract: bf16 is a 2-byte trivially copyable value, layout-compatible with CUDA's
// __nv_bfloat16 (device code reinterprets pointers). It is a storage format only: arithmetic
// happens in fp32. f32 -> bf16 rounds to nearest, ties to even (as __float2bfloat16_rn):
// finite values beyond the largest bf16 become +-inf, subnormals round like any other value,
// a NaN stays a (quiet) NaN of the same sign. bf16 -> f32 is exact. Pure functions, no state.
#pragma once

#include <cstdint>
#include <cstring>

namespace tandem {

struct bf16 {
  uint16_t bits = 0;
};
static_assert(sizeof(bf16) == 2, "bf16 must be two bytes");

inline bf16 f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)  // NaN: keep sign and top payload, force quiet
    return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even on the 16 dropped bits
  return bf16{static_cast<uint16_t>(u >> 16)};
}

inline float bf16_to_f32(bf16 b) {
  const uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The value f takes after a round trip through bf16.
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

}  // namespace tandem
