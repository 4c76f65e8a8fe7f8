// CPU linear layer for a few rows (decode): y[M,out] = x[M,in] @ W[out,in]^T (+ b), M small.
//
// Contract: see linear_forward_skinny in kernels/matmul.h. fp32, every output a sum over k in
// a fixed order (vector lanes, then a tree over the lanes): results do not depend on the
// thread count. Safe to call inside or outside an OpenMP region (no BLAS).
//
// Why not sgemm: with 1..16 rows there is almost no reuse of W, so the product is a stream
// over W (out * in * 4 bytes) and its speed is the speed of that stream. OpenBLAS packs and
// blocks for large M and reads W well below memory bandwidth there. Here each block of
// kR = 4 output rows of W is streamed from memory once, and every x row (held in L1/L2: at
// most 16 x in floats) is multiplied against it while it is in L1: blocks of kMB <= 4 x rows,
// kR x kMB vector accumulators in registers, one FMA per W lane per x row. The output-row
// blocks are split statically over the OpenMP threads, so each thread streams one
// contiguous part of W, and software prefetch runs two blocks ahead in that stream (into L2). With
// AVX-512 the 4 x 4 block is written out in intrinsics (see block<4, 4>): GCC's allocation of
// the generic one reloads W per x row and left M = 4 load-bound (head 4.3 -> 2.5 ms).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/cpu/simd.h"
#include "kernels/matmul.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

namespace {

using simd::kLanes;
using simd::VF;

constexpr int kR = 4;   // output rows (rows of W) per block
constexpr int kMB = 4;  // x rows per register block
// Software prefetch of W: kPrefetchBlocks blocks (kPrefetchBlocks * kR rows) ahead in the
// stream, into L2 (locality 2: prefetcht1), not L1. With the non-temporal hint (locality 0,
// which on AMD fills L1) the lines two blocks ahead (24 KB at in = 768) plus the block in use
// overflow a 32 KB L1 (Zen 4), and the decode stream fell to 16-24 GB/s against 30-39 GB/s
// with prefetcht1 on the same Zen 4 (M = 1 and 4, weights streamed from DRAM).
constexpr int kPrefetchBlocks = 2;
constexpr int kPrefetchLocality = 2;

template <int W>
struct Vec {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
};

// Lanes [Off, Off + W/2) of v (a shuffle: no memory round trip, which would pin the
// accumulators on the stack).
template <int W, int Off, size_t... I>
inline typename Vec<W / 2>::type half(typename Vec<W>::type v, std::index_sequence<I...>) {
  return __builtin_shufflevector(v, v, (Off + static_cast<int>(I))...);
}

// Sum of the lanes: halves added until 4 lanes are left, then (v0 + v2) + (v1 + v3).
template <int W>
inline float tree_sum(typename Vec<W>::type v) {
  if constexpr (W == 4) {
    return (v[0] + v[2]) + (v[1] + v[3]);
  } else {
    using Seq = std::make_index_sequence<W / 2>;
    return tree_sum<W / 2>(half<W, 0>(v, Seq{}) + half<W, W / 2>(v, Seq{}));
  }
}

// f(integral_constant<0>) ... f(integral_constant<N-1>), expanded in the front end, so the
// accumulator arrays below are indexed by constants and live in registers (with "#pragma GCC
// unroll" loops GCC unrolls too late and keeps them on the stack).
template <int N, class F>
[[gnu::always_inline]] inline void unroll(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

// y[m0 + m][o + r] = W[o + r] . x[m0 + m] for r < R, m < MB.
template <int R, int MB>
void block(float* y, const float* x, const float* W, int64_t o, int64_t m0, int64_t in,
           int64_t out) {
  VF acc[R][MB];
  unroll<R>([&](auto r) { unroll<MB>([&](auto m) { acc[r][m] = VF{}; }); });
  const float* w0 = W + o * in;
  const float* x0 = x + m0 * in;
  int64_t k = 0;
  for (; k + kLanes <= in; k += kLanes) {
    VF w[R];
    unroll<R>([&](auto r) {
      __builtin_prefetch(w0 + (kPrefetchBlocks * R + r) * in + k, 0, kPrefetchLocality);
      w[r] = simd::load(w0 + r * in + k);
    });
    unroll<MB>([&](auto m) {
      const VF xv = simd::load(x0 + m * in + k);
      unroll<R>([&](auto r) { acc[r][m] += w[r] * xv; });
    });
  }
  if (k < in) {  // the tail: masked loads, zero lanes past in
    const int64_t n = in - k;
    VF w[R];
    unroll<R>([&](auto r) { w[r] = simd::load_partial(w0 + r * in + k, n, 0.0f); });
    unroll<MB>([&](auto m) {
      const VF xv = simd::load_partial(x0 + m * in + k, n, 0.0f);
      unroll<R>([&](auto r) { acc[r][m] += w[r] * xv; });
    });
  }
  unroll<MB>([&](auto m) {
    unroll<R>([&](auto r) { y[(m0 + m) * out + o + r] = tree_sum<kLanes>(acc[r][m]); });
  });
}

#if defined(__AVX512F__)
// The 4 x 4 block with 32 vector registers, written out: 16 named accumulators, the 4 W
// vectors of a step loaded once and kept in registers (the generic version above makes GCC
// reload each W vector once per x row, 32 loads per 16 FMAs instead of 20, which leaves the
// loop load-bound). Same arithmetic as block<4, 4>: lane j of acc(r, m) sums k = j mod 16 in
// order, then the same tree over the lanes, so results do not change with the block shape.
// The prefetch runs two blocks (8 rows of W) ahead: the stream of W is contiguous over the
// blocks a thread owns, and one row ahead was too close to hide memory latency.
// tree_sum<16> in intrinsics, the same additions in the same order (lo + hi halves down to 4
// lanes, then (v0 + v2) + (v1 + v3)); the shuffle-vector version makes GCC keep the block's
// W vectors out of registers.
// (GCC 12's avx512fintrin.h trips -Wuninitialized on its own _mm512_undefined inside the
// casts below: a false positive, silenced here only.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
inline float tree_sum_512(__m512 v) {
  const __m256 h = _mm512_castps512_ps256(v) + _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  const __m128 q = _mm256_castps256_ps128(h) + _mm256_extractf128_ps(h, 1);
  const __m128 s = q + _mm_movehl_ps(q, q);  // (q0 + q2, q1 + q3, ...)
  return _mm_cvtss_f32(s) + _mm_cvtss_f32(_mm_shuffle_ps(s, s, 1));
}
#pragma GCC diagnostic pop

template <>
void block<4, 4>(float* y, const float* x, const float* W, int64_t o, int64_t m0, int64_t in,
                 int64_t out) {
  const float* w0 = W + o * in;
  const float* x0 = x + m0 * in;
  const float* x1 = x0 + in;
  const float* x2 = x1 + in;
  const float* x3 = x2 + in;
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00,
         a12 = a00, a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00,
         a32 = a00, a33 = a00;
  // Explicit FMAs (the same single rounding as GCC's contraction of `a += w * x`); with plain
  // vector arithmetic GCC folds the W loads into the FMAs again.
#define TANDEM_SKINNY_STEP(LOAD)                                                               \
  {                                                                                            \
    const __m512 w_0 = LOAD(w0), w_1 = LOAD(w0 + in), w_2 = LOAD(w0 + 2 * in),                 \
                 w_3 = LOAD(w0 + 3 * in);                                                      \
    __m512 xv = LOAD(x0);                                                                      \
    a00 = _mm512_fmadd_ps(w_0, xv, a00), a10 = _mm512_fmadd_ps(w_1, xv, a10);                 \
    a20 = _mm512_fmadd_ps(w_2, xv, a20), a30 = _mm512_fmadd_ps(w_3, xv, a30);                 \
    xv = LOAD(x1);                                                                             \
    a01 = _mm512_fmadd_ps(w_0, xv, a01), a11 = _mm512_fmadd_ps(w_1, xv, a11);                 \
    a21 = _mm512_fmadd_ps(w_2, xv, a21), a31 = _mm512_fmadd_ps(w_3, xv, a31);                 \
    xv = LOAD(x2);                                                                             \
    a02 = _mm512_fmadd_ps(w_0, xv, a02), a12 = _mm512_fmadd_ps(w_1, xv, a12);                 \
    a22 = _mm512_fmadd_ps(w_2, xv, a22), a32 = _mm512_fmadd_ps(w_3, xv, a32);                 \
    xv = LOAD(x3);                                                                             \
    a03 = _mm512_fmadd_ps(w_0, xv, a03), a13 = _mm512_fmadd_ps(w_1, xv, a13);                 \
    a23 = _mm512_fmadd_ps(w_2, xv, a23), a33 = _mm512_fmadd_ps(w_3, xv, a33);                 \
  }
  int64_t k = 0;
  for (; k + kLanes <= in; k += kLanes) {
    for (int r = 0; r < 4; ++r)
      __builtin_prefetch(w0 + (kPrefetchBlocks * 4 + r) * in + k, 0, kPrefetchLocality);
#define TANDEM_LOAD_FULL(p) _mm512_loadu_ps((p) + k)
    TANDEM_SKINNY_STEP(TANDEM_LOAD_FULL)
  }
  if (k < in) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (in - k)) - 1u);
#define TANDEM_LOAD_TAIL(p) _mm512_maskz_loadu_ps(mask, (p) + k)
    TANDEM_SKINNY_STEP(TANDEM_LOAD_TAIL)
  }
#undef TANDEM_LOAD_FULL
#undef TANDEM_LOAD_TAIL
#undef TANDEM_SKINNY_STEP
  float* y0 = y + m0 * out + o;
  const __m512 acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  for (int m = 0; m < 4; ++m)
    for (int r = 0; r < 4; ++r) y0[m * out + r] = tree_sum_512(acc[r][m]);
}
#endif

using BlockFn = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t);

template <int R>
BlockFn block_fn(int64_t mb) {
  switch (mb) {
    case 1: return block<R, 1>;
    case 2: return block<R, 2>;
    case 3: return block<R, 3>;
    default: return block<R, kMB>;
  }
}

}  // namespace

void linear_forward_skinny(float* y, const float* x, const float* W, const float* b, int64_t M,
                           int64_t in, int64_t out) {
  TANDEM_CHECK(M >= 0 && in >= 0 && out >= 0, "linear_forward_skinny sizes M {} in {} out {}",
               M, in, out);
  if (M == 0 || out == 0) return;
  const int64_t blocks = (out + kR - 1) / kR;
#pragma omp parallel for schedule(static) if (M * in * out >= (1 << 16))
  for (int64_t ob = 0; ob < blocks; ++ob) {
    const int64_t o = ob * kR, rows = std::min<int64_t>(kR, out - o);
    for (int64_t m0 = 0; m0 < M; m0 += kMB) {
      const int64_t mb = std::min<int64_t>(kMB, M - m0);
      if (rows == kR) {
        block_fn<kR>(mb)(y, x, W, o, m0, in, out);
      } else {
        const BlockFn one = block_fn<1>(mb);
        for (int64_t r = 0; r < rows; ++r) one(y, x, W, o + r, m0, in, out);
      }
    }
    if (b)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < rows; ++r) y[m * out + o + r] += b[o + r];
  }
}

}  // namespace tandem::kernels::cpu
