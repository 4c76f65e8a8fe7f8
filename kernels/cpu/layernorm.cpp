// CPU reference for kernels/layernorm.h: LayerNorm over the last dimension, fwd/bwd.
//
// Contract: forward, per row n of in[N, C]: mean[n], rstd[n] = 1/sqrt(var + eps) with the
// biased variance (as PyTorch), out = (x - mean) * rstd * weight + bias. Rows run in parallel.
// backward ACCUMULATES into din, dweight and dbias (+=). dweight/dbias are summed per thread
// over a static row split and reduced in thread order, so results do not depend on timing.
// forward_bf16: each row exactly as forward computes it, then rounded to bf16.
#include "kernels/layernorm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps) {
  TANDEM_CHECK(N >= 0 && C > 0, "layernorm_forward sizes N {} C {}", N, C);
  TANDEM_CHECK(eps >= 0.0f, "layernorm_forward eps {} must be >= 0", eps);
#pragma omp parallel for schedule(static) if (N * C >= (1 << 14))
  for (int64_t n = 0; n < N; ++n) {
    const float* x = in + n * C;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; ++c) s += x[c];
    const float m = s / static_cast<float>(C);
    float v = 0.0f;  // two-pass variance: no cancellation for rows with a large mean
#pragma omp simd reduction(+ : v)
    for (int64_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    const float r = 1.0f / std::sqrt(v / static_cast<float>(C) + eps);
    float* o = out + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = r;
  }
}

void layernorm_forward_bf16(bf16* out, float* mean, float* rstd, const float* in,
                            const float* weight, const float* bias, int64_t N, int64_t C, float eps) {
  TANDEM_CHECK(N >= 0 && C > 0, "layernorm_forward_bf16 sizes N {} C {}", N, C);
#pragma omp parallel if (N * C >= (1 << 14))
  {
    std::vector<float> row(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      layernorm_forward(row.data(), mean + n, rstd + n, in + n * C, weight, bias, 1, C, eps);
      for (int64_t c = 0; c < C; ++c) out[n * C + c] = f32_to_bf16(row[c]);
    }
  }
}

void layernorm_backward(float* din, float* dweight, float* dbias, const float* dout,
                        const float* in, const float* weight, const float* mean, const float* rstd,
                        int64_t N, int64_t C) {
  TANDEM_CHECK(N >= 0 && C > 0, "layernorm_backward sizes N {} C {}", N, C);
  if (N == 0) return;
  const int nt = N * C >= (1 << 14) ? omp_get_max_threads() : 1;
  // partial[t] = [dweight (C) | dbias (C)] of thread t's rows.
  std::vector<float> partial(static_cast<size_t>(nt) * 2 * C, 0.0f);
#pragma omp parallel num_threads(nt)
  {
    float* pw = partial.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * C;
    float* pb = pw + C;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float* x = in + n * C;
      const float* g = dout + n * C;
      const float m = mean[n], r = rstd[n];
      // dxhat = g * weight; din = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
      float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
#pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
      for (int64_t c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * r;
        const float dxhat = g[c] * weight[c];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
        pw[c] += g[c] * xhat;
        pb[c] += g[c];
      }
      const float a = sum_dxhat / static_cast<float>(C);
      const float b = sum_dxhat_xhat / static_cast<float>(C);
      float* d = din + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * r;
        d[c] += r * (g[c] * weight[c] - a - xhat * b);
      }
    }
  }
  for (int t = 0; t < nt; ++t) {
    const float* pw = partial.data() + static_cast<size_t>(t) * 2 * C;
    const float* pb = pw + C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      dweight[c] += pw[c];
      dbias[c] += pb[c];
    }
  }
}

}  // namespace tandem::kernels::cpu
