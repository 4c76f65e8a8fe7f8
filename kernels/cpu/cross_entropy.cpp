// CPU reference for kernels/cross_entropy.h: softmax cross-entropy stages over (possibly
// vocab-sharded) logits.
//
// Contract: logits [N, Vl] hold global columns [col_begin, col_begin + Vl); only the first
// `valid = clamp(vocab - col_begin, 0, Vl)` of them are real, the rest are padding (never in
// the max or the sum, zero gradient). A shard with no real column reports max = -inf and
// sumexp = 0, the neutral elements of the MAX / SUM all-reduces that follow. Negative targets
// are ignored (loss 0, zero gradient row). Rows run in parallel (OpenMP); the wide rows (50k
// columns) run through explicit SIMD (kernels/cpu/simd.h) with its polynomial exp (relative
// error ~2e-7), whatever the vector width the build targets.
#include "kernels/cross_entropy.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/simd.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

namespace {

using simd::kLanes;
using simd::VF;

int64_t valid_columns(int64_t Vl, int64_t col_begin, int64_t vocab) {
  return std::clamp<int64_t>(vocab - col_begin, 0, Vl);
}

void check_sizes(const char* what, int64_t N, int64_t Vl, int64_t col_begin, int64_t vocab) {
  TANDEM_CHECK(N >= 0 && Vl >= 0 && col_begin >= 0 && vocab >= 0,
               "{}: N {} Vl {} col_begin {} vocab {}", what, N, Vl, col_begin, vocab);
}

// Rows of a few thousand columns or more are worth a thread each.
inline bool parallel_rows(int64_t N, int64_t Vl) { return N > 1 && N * Vl >= (1 << 15); }

}  // namespace

void xent_row_max(float* rowmax, const float* logits, int64_t N, int64_t Vl, int64_t col_begin,
                  int64_t vocab) {
  check_sizes("xent_row_max", N, Vl, col_begin, vocab);
  const int64_t valid = valid_columns(Vl, col_begin, vocab);
#pragma omp parallel for schedule(static) if (parallel_rows(N, Vl))
  for (int64_t n = 0; n < N; ++n) {
    const float* row = logits + n * Vl;
    const float ninf = -__builtin_inff();
    VF m0 = simd::splat(ninf), m1 = m0;  // two chains hide the max latency
    int64_t j = 0;
    for (; j + 2 * kLanes <= valid; j += 2 * kLanes) {
      m0 = simd::vmax(m0, simd::load(row + j));
      m1 = simd::vmax(m1, simd::load(row + j + kLanes));
    }
    for (; j < valid; j += kLanes) m0 = simd::vmax(m0, simd::load_partial(row + j, valid - j, ninf));
    const float m = simd::hmax(simd::vmax(m0, m1));
    rowmax[n] = m;
  }
}

void xent_row_sumexp(float* sumexp, const float* logits, const float* rowmax, int64_t N, int64_t Vl,
                     int64_t col_begin, int64_t vocab) {
  check_sizes("xent_row_sumexp", N, Vl, col_begin, vocab);
  const int64_t valid = valid_columns(Vl, col_begin, vocab);
#pragma omp parallel for schedule(static) if (parallel_rows(N, Vl))
  for (int64_t n = 0; n < N; ++n) {
    const float* row = logits + n * Vl;
    const float m = rowmax[n];
    // fp32 SIMD partial sums over chunks of 2048 columns, chunks added in double: a 50k-wide
    // row keeps ~1e-6 relative accuracy whatever the vector width.
    const VF mv = simd::splat(m);
    double total = 0.0;
    for (int64_t j0 = 0; j0 < valid; j0 += 2048) {
      const int64_t j1 = std::min(valid, j0 + 2048);
      VF s0{}, s1{};
      int64_t j = j0;
      for (; j + 2 * kLanes <= j1; j += 2 * kLanes) {
        s0 += simd::vexp(simd::load(row + j) - mv);
        s1 += simd::vexp(simd::load(row + j + kLanes) - mv);
      }
      // the tail reads -inf past the row's end: exp(-inf) = 0 adds nothing
      for (; j < j1; j += kLanes)
        s0 += simd::vexp(simd::load_partial(row + j, j1 - j, -__builtin_inff()) - mv);
      total += simd::hsum(s0 + s1);
    }
    sumexp[n] = static_cast<float>(total);
  }
}

void xent_target_logit(float* tlogit, const float* logits, const int32_t* targets, int64_t N,
                       int64_t Vl, int64_t col_begin) {
  TANDEM_CHECK(N >= 0 && Vl >= 0 && col_begin >= 0, "xent_target_logit: N {} Vl {} col_begin {}", N,
               Vl, col_begin);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t j = static_cast<int64_t>(targets[n]) - col_begin;
    tlogit[n] = (targets[n] >= 0 && j >= 0 && j < Vl) ? logits[n * Vl + j] : 0.0f;
  }
}

void xent_losses(float* losses, const float* rowmax, const float* sumexp, const float* tlogit,
                 const int32_t* targets, int64_t N) {
  for (int64_t n = 0; n < N; ++n)
    losses[n] = targets[n] < 0 ? 0.0f : std::log(sumexp[n]) + rowmax[n] - tlogit[n];
}

void xent_backward(float* dlogits, const float* logits, const float* rowmax, const float* sumexp,
                   const int32_t* targets, int64_t N, int64_t Vl, int64_t col_begin, int64_t vocab,
                   float scale) {
  check_sizes("xent_backward", N, Vl, col_begin, vocab);
  const int64_t valid = valid_columns(Vl, col_begin, vocab);
  for (int64_t n = 0; n < N; ++n)
    TANDEM_CHECK(targets[n] < vocab, "xent_backward: target {} of row {} is not below vocab {}",
                 targets[n], n, vocab);
  // dlogits may alias logits: each element is read before it is written, and by the same thread.
#pragma omp parallel for schedule(static) if (parallel_rows(N, Vl))
  for (int64_t n = 0; n < N; ++n) {
    const float* in = logits + n * Vl;
    float* out = dlogits + n * Vl;
    if (targets[n] < 0) {
      std::fill(out, out + Vl, 0.0f);
      continue;
    }
    const VF m = simd::splat(rowmax[n]);
    const VF k = simd::splat(scale / sumexp[n]);
    for (int64_t j = 0; j < valid; j += kLanes)
      simd::store_n(out + j, k * simd::vexp(simd::load_n(in + j, valid - j, 0.0f) - m), valid - j);
    std::fill(out + valid, out + Vl, 0.0f);
    const int64_t t = static_cast<int64_t>(targets[n]) - col_begin;
    if (t >= 0 && t < valid) out[t] -= scale;
  }
}

}  // namespace tandem::kernels::cpu
