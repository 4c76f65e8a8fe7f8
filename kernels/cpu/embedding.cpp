// CPU reference for kernels/embedding.h: row lookup and its scatter-add gradient.
//
// Contract: the table holds logical rows [row_offset, row_offset + R); ids outside that range
// (another shard's rows, or negative ids) read as zero rows and receive no gradient.
// forward overwrites out (or adds into it with accumulate). backward adds into dtable; ids may
// repeat, so threads split the COLUMNS (cache-line sized blocks) and each walks all N ids in
// order: no races, and the summation order is the same for any thread count.
#include "kernels/embedding.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

namespace {
inline bool held(int64_t row, int64_t R) { return row >= 0 && row < R; }
}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C,
                       int64_t R, int64_t row_offset, bool accumulate) {
  TANDEM_CHECK(N >= 0 && C >= 0 && R >= 0, "embedding_forward sizes N {} C {} R {}", N, C, R);
#pragma omp parallel for schedule(static) if (N * C >= (1 << 15))
  for (int64_t n = 0; n < N; ++n) {
    const int64_t row = static_cast<int64_t>(ids[n]) - row_offset;
    float* o = out + n * C;
    if (held(row, R)) {
      const float* t = table + row * C;
      if (accumulate) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] += t[c];
      } else {
        std::memcpy(o, t, static_cast<size_t>(C) * sizeof(float));
      }
    } else if (!accumulate) {
      std::memset(o, 0, static_cast<size_t>(C) * sizeof(float));
    }
  }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t C,
                        int64_t R, int64_t row_offset) {
  TANDEM_CHECK(N >= 0 && C >= 0 && R >= 0, "embedding_backward sizes N {} C {} R {}", N, C, R);
  if (N == 0 || C == 0) return;
  // Column blocks of whole cache lines (16 floats), spread evenly over the threads.
  constexpr int64_t kLine = 16;
  const int64_t lines = (C + kLine - 1) / kLine;
  const int nt =
      static_cast<int>(std::min<int64_t>(N * C >= (1 << 15) ? omp_get_max_threads() : 1, lines));
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t c0 = std::min(C, lines * t / T * kLine);
    const int64_t c1 = std::min(C, lines * (t + 1) / T * kLine);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t row = static_cast<int64_t>(ids[n]) - row_offset;
      if (!held(row, R)) continue;
      float* d = dtable + row * C;
      const float* g = dout + n * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) d[c] += g[c];
    }
  }
}

}  // namespace tandem::kernels::cpu
