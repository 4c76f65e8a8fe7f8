// Explicit SIMD for the CPU kernels' hot loops: one vector type of the widest width the build
// targets, written with GCC vector extensions so the same source compiles to AVX-512, AVX2 or
// SSE, and so that no hot loop depends on the auto-vectorizer (which, without AVX-512 masks,
// gives up on loops with selects: "not vectorized: control flow in loop").
//
// Contract:
//   - VF is kLanes floats (16 with AVX-512F, 8 with AVX, else 4); VI the matching int32 vector.
//   - load/store are unaligned. load_partial(p, n, fill) reads p[0..n) and fills the other
//     lanes (n is clamped to [0, kLanes]) and never touches p[n..); store_partial writes only
//     p[0..n). load_n/store_n take the plain path for a whole vector (n >= kLanes) and the
//     masked one only for a tail, so a loop over a row can use them for every step.
//   - vexp(x) = exp(x) in fp32 by the Cephes expf scheme (x = k ln2 + r, a degree-6
//     polynomial in r, times 2^k): relative error ~2e-7 on [-87.3, 88.3]; below that 0
//     (so exp(-inf) = 0), above it +inf; NaN propagates. Branch-free: selects are blends.
//   - hsum/hmax reduce the lanes in a fixed order (results do not depend on threads or timing).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace tandem::kernels::cpu::simd {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float VF __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline VF splat(float x) { return VF{} + x; }
inline VF load(const float* p) {
  VF v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, VF v) { std::memcpy(p, &v, sizeof v); }
// Partial loads and stores are masked where the ISA has it (AVX-512 masks, AVX2 maskload /
// maskstore, which never fault on the lanes they leave out), else a bounded memcpy.
inline int64_t clamp_lanes(int64_t n) { return n < 0 ? 0 : (n > kLanes ? kLanes : n); }
#if defined(__AVX512F__)
inline __mmask16 lane_mask(int64_t n) {
  return static_cast<__mmask16>((uint32_t{1} << clamp_lanes(n)) - 1u);
}
inline VF load_partial(const float* p, int64_t n, float fill) {
  return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), lane_mask(n), p);
}
inline void store_partial(float* p, VF v, int64_t n) { _mm512_mask_storeu_ps(p, lane_mask(n), v); }
#elif defined(__AVX2__)
inline __m256i lane_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(clamp_lanes(n))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline VF load_partial(const float* p, int64_t n, float fill) {
  const __m256i m = lane_mask(n);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
inline void store_partial(float* p, VF v, int64_t n) { _mm256_maskstore_ps(p, lane_mask(n), v); }
#else
inline VF load_partial(const float* p, int64_t n, float fill) {
  VF v = splat(fill);
  std::memcpy(&v, p, static_cast<size_t>(clamp_lanes(n)) * sizeof(float));
  return v;
}
inline void store_partial(float* p, VF v, int64_t n) {
  std::memcpy(p, &v, static_cast<size_t>(clamp_lanes(n)) * sizeof(float));
}
#endif

inline VF load_n(const float* p, int64_t n, float fill) {
  return n >= kLanes ? load(p) : load_partial(p, n, fill);
}
inline void store_n(float* p, VF v, int64_t n) {
  if (n >= kLanes)
    store(p, v);
  else
    store_partial(p, v, n);
}

inline VF vmin(VF a, VF b) { return a < b ? a : b; }
inline VF vmax(VF a, VF b) { return a > b ? a : b; }

inline float hsum(VF v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}
inline float hmax(VF v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = m > v[i] ? m : v[i];
  return m;
}

inline VF vexp(VF x) {
  constexpr float kLo = -87.33654f, kHi = 88.37626f;
  const VF xc = vmin(splat(kHi), vmax(splat(kLo), x));  // NaN -> kLo: the int cast stays defined
  const VF t = xc * 1.44269504088896341f + 12582912.0f;  // round to nearest via 1.5 * 2^23
  const VF fn = t - 12582912.0f;
  const VF r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
  VF p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const VF y = p * r * r + r + 1.0f;
  const VI bits = (__builtin_convertvector(fn, VI) + 127) << 23;
  VF scale;
  std::memcpy(&scale, &bits, sizeof scale);
  VF e = y * scale;
  e = x < kLo ? splat(0.0f) : e;
  e = x > kHi ? splat(__builtin_inff()) : e;
  return x != x ? x : e;
}

}  // namespace tandem::kernels::cpu::simd
