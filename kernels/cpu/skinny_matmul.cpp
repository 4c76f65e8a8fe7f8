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
// contiguous part of W.
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
constexpr int64_t kPrefetch = 1024;

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
      __builtin_prefetch(w0 + r * in + k + kPrefetch, 0, 0);
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
