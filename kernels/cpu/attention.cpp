// CPU reference for kernels/attention.h: causal multi-head attention core, forward/backward.
//
// Contract: see kernels/attention.h. Scores s_ij = (q_i . k_j) / sqrt(D) for j <= i;
// lse_i = log sum_j exp(s_ij); P_ij = exp(s_ij - lse_i); out_i = sum_j P_ij v_j.
// Backward (overwrites dqkv), with D_i = dout_i . out_i:
//   dS_ij = P_ij (dout_i . v_j - D_i);  dq_i = sum_j dS_ij k_j / sqrt(D);
//   dk_j = sum_i dS_ij q_i / sqrt(D);   dv_j = sum_i P_ij dout_i.
// P comes from `probs` when given, else it is recomputed from q, k and lse (flash style).
//
// Implementation: one (batch, head) pair per OpenMP task. Its q, k, v are gathered into
// contiguous, zero-padded scratch (k and v also transposed where a product wants them so),
// then every product runs through one register-blocked micro-kernel (GCC vector extensions,
// AVX-512 or AVX2 wide) over blocks of kQB query rows, touching only the causal part
// (0 <= j < end of the block). No BLAS here: this code runs inside OpenMP regions.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/attention.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

namespace {

// exp(x) in fp32, Cephes expf scheme: x = n ln2 + r, degree-6 polynomial in r, times 2^n.
// Relative error ~2e-7 on [-87.3, 88.3]; below that returns 0, above it +inf; NaN propagates.
// (Same helper as in gelu.cpp and cross_entropy.cpp: each file keeps its own copy so the
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

#if defined(__AVX512F__)
constexpr int kVW = 16;  // floats per vector register
#else
constexpr int kVW = 8;
#endif
typedef float vfloat __attribute__((vector_size(kVW * sizeof(float))));
constexpr int64_t kNR = 2 * kVW;  // micro-tile columns (two vectors)
constexpr int kMR = 4;            // micro-tile rows: 8 independent accumulators
constexpr int64_t kQB = 32;       // query rows per block (a multiple of kMR)

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

inline vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// C[MR x kNR] (+)= A[MR x k] * B[k x kNR]; all row-major with the given leading dimensions.
template <int MR>
inline void micro_kernel(int64_t k, const float* A, int64_t lda, const float* B, int64_t ldb,
                         float* C, int64_t ldc, bool accumulate) {
  vfloat c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) c0[r] = c1[r] = vfloat{};
  for (int64_t p = 0; p < k; ++p) {
    const vfloat b0 = vload(B + p * ldb), b1 = vload(B + p * ldb + kVW);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * lda + p];
      c0[r] += a * b0;
      c1[r] += a * b1;
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float* cr = C + r * ldc;
    if (accumulate) {
      c0[r] += vload(cr);
      c1[r] += vload(cr + kVW);
    }
    vstore(cr, c0[r]);
    vstore(cr + kVW, c1[r]);
  }
}

// C[m x n] (+)= A[m x k] * B[k x n], row-major, n a multiple of kNR.
void small_gemm(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
                int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t j = 0; j < n; j += kNR) {
    int64_t i = 0;
    for (; i + kMR <= m; i += kMR)
      micro_kernel<kMR>(k, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc, accumulate);
    for (; i < m; ++i) micro_kernel<1>(k, A + i * lda, lda, B + j, ldb, C + i * ldc + j, ldc,
                                       accumulate);
  }
}

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols.
void transpose(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  constexpr int64_t kB = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kB)
    for (int64_t c0 = 0; c0 < cols; c0 += kB)
      for (int64_t r = r0; r < std::min(rows, r0 + kB); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kB); ++c) dst[c * ldd + r] = src[r * lds + c];
}

// Problem geometry and per-thread scratch layout.
struct Geometry {
  int64_t B, T, H, D;
  int64_t Tp, Dp;  // T and D rounded up to kNR (zero padding)
  int64_t C3, HD;  // qkv row width, out row width
  float scale;
  Geometry(int64_t B_, int64_t T_, int64_t H_, int64_t D_)
      : B(B_), T(T_), H(H_), D(D_), Tp(round_up(T_, kNR)), Dp(round_up(D_, kNR)),
        C3(3 * H_ * D_), HD(H_ * D_), scale(1.0f / std::sqrt(static_cast<float>(D_))) {}
  // Rows [0, T) of one head's slice `part` (0 q, 1 k, 2 v) into dst[T x Dp], zero padded.
  void gather_rows(float* dst, const float* qkv, int64_t b, int64_t h, int part) const {
    for (int64_t t = 0; t < T; ++t) {
      const float* src = qkv + (b * T + t) * C3 + part * HD + h * D;
      std::memcpy(dst + t * Dp, src, static_cast<size_t>(D) * sizeof(float));
      std::memset(dst + t * Dp + D, 0, static_cast<size_t>(Dp - D) * sizeof(float));
    }
  }
  // The same slice transposed: dst[Dp x Tp], zero padded.
  void gather_cols(float* dst, const float* qkv, int64_t b, int64_t h, int part) const {
    std::memset(dst, 0, static_cast<size_t>(Dp * Tp) * sizeof(float));
    transpose(dst, Tp, qkv + b * T * C3 + part * HD + h * D, C3, T, D);
  }
};

void check_dims(const char* what, int64_t B, int64_t T, int64_t H, int64_t D) {
  TANDEM_CHECK(B >= 0 && T >= 0 && H > 0 && D > 0, "{}: B {} T {} H {} D {}", what, B, T, H, D);
}

// Scratch buffers for one thread, carved from one allocation made before the parallel region
// (so that no allocation can fail, and throw, inside it).
struct Scratch {
  std::vector<float> buf;
  size_t per_thread = 0;
  Scratch(int threads, size_t floats) : buf(static_cast<size_t>(threads) * floats), per_thread(floats) {}
  float* of(int thread) { return buf.data() + static_cast<size_t>(thread) * per_thread; }
};

}  // namespace

void attention_forward(float* out, float* lse, float* probs, const float* qkv, int64_t B, int64_t T,
                       int64_t H, int64_t D) {
  check_dims("attention_forward", B, T, H, D);
  if (B == 0 || T == 0) return;
  const Geometry g(B, T, H, D);
  const int64_t BH = B * H;
  const int nt = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), BH));
  // Q [T x Dp] | Kt [Dp x Tp] | V [Tp x Dp] | S [kQB x Tp] | O [kQB x Dp]
  const size_t szQ = T * g.Dp, szKt = g.Dp * g.Tp, szV = g.Tp * g.Dp, szS = kQB * g.Tp;
  Scratch scratch(nt, szQ + szKt + szV + szS + kQB * g.Dp);

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    float* Q = scratch.of(omp_get_thread_num());
    float* Kt = Q + szQ;
    float* V = Kt + szKt;
    float* S = V + szV;
    float* O = S + szS;
    g.gather_rows(Q, qkv, b, h, 0);
    g.gather_cols(Kt, qkv, b, h, 1);
    g.gather_rows(V, qkv, b, h, 2);
    std::memset(V + T * g.Dp, 0, static_cast<size_t>((g.Tp - T) * g.Dp) * sizeof(float));
    float* lse_bh = lse + bh * T;
    float* probs_bh = probs ? probs + bh * T * T : nullptr;

    for (int64_t i0 = 0; i0 < T; i0 += kQB) {
      const int64_t i1 = std::min(T, i0 + kQB), m = i1 - i0, nk = round_up(i1, kNR);
      small_gemm(m, nk, D, Q + i0 * g.Dp, g.Dp, Kt, g.Tp, S, g.Tp, false);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t i = i0 + r, len = i + 1;
        float* s = S + r * g.Tp;
        float mx = -__builtin_inff();
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < len; ++j) {
          s[j] *= g.scale;
          mx = std::max(mx, s[j]);
        }
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < len; ++j) {
          s[j] = exp_f32(s[j] - mx);
          sum += s[j];
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) s[j] *= inv;
        std::fill(s + len, s + nk, 0.0f);
        lse_bh[i] = mx + std::log(sum);
        if (probs_bh) {
          float* prow = probs_bh + i * T;
          std::memcpy(prow, s, static_cast<size_t>(len) * sizeof(float));
          std::fill(prow + len, prow + T, 0.0f);
        }
      }
      small_gemm(m, g.Dp, i1, S, g.Tp, V, g.Dp, O, g.Dp, false);
      for (int64_t r = 0; r < m; ++r)
        std::memcpy(out + (b * T + i0 + r) * g.HD + h * D, O + r * g.Dp,
                    static_cast<size_t>(D) * sizeof(float));
    }
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const float* probs, int64_t B, int64_t T, int64_t H,
                        int64_t D) {
  check_dims("attention_backward", B, T, H, D);
  if (B == 0 || T == 0) return;
  const Geometry g(B, T, H, D);
  const int64_t BH = B * H, Tp = g.Tp, Dp = g.Dp;
  const int nt = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), BH));
  // Q [T x Dp] | K [Tp x Dp] | Kt [Dp x Tp] | Vt [Dp x Tp] | dO [T x Dp] | Dv [T]
  // | dK, dV [Tp x Dp] | P, dS [kQB x Tp] | Pt, dSt [Tp x kQB] | dQ [kQB x Dp]
  const size_t szRows = T * Dp, szPad = Tp * Dp, szBlk = kQB * Tp;
  Scratch scratch(nt, szRows * 2 + szPad * 5 + T + szBlk * 4 + kQB * Dp);

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    float* Q = scratch.of(omp_get_thread_num());
    float* K = Q + szRows;
    float* Kt = K + szPad;
    float* Vt = Kt + szPad;
    float* dO = Vt + szPad;
    float* Dv = dO + szRows;
    float* dK = Dv + T;
    float* dV = dK + szPad;
    float* P = dV + szPad;
    float* dS = P + szBlk;
    float* Pt = dS + szBlk;
    float* dSt = Pt + szBlk;
    float* dQ = dSt + szBlk;

    g.gather_rows(Q, qkv, b, h, 0);
    g.gather_rows(K, qkv, b, h, 1);
    std::memset(K + T * Dp, 0, static_cast<size_t>((Tp - T) * Dp) * sizeof(float));
    if (!probs) g.gather_cols(Kt, qkv, b, h, 1);
    g.gather_cols(Vt, qkv, b, h, 2);
    for (int64_t t = 0; t < T; ++t) {
      const float* go = dout + (b * T + t) * g.HD + h * D;
      const float* o = out + (b * T + t) * g.HD + h * D;
      std::memcpy(dO + t * Dp, go, static_cast<size_t>(D) * sizeof(float));
      std::memset(dO + t * Dp + D, 0, static_cast<size_t>(Dp - D) * sizeof(float));
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int64_t d = 0; d < D; ++d) acc += go[d] * o[d];
      Dv[t] = acc;
    }
    std::memset(dK, 0, 2 * szPad * sizeof(float));  // dK and dV
    const float* lse_bh = lse + bh * T;
    const float* probs_bh = probs ? probs + bh * T * T : nullptr;

    for (int64_t i0 = 0; i0 < T; i0 += kQB) {
      const int64_t i1 = std::min(T, i0 + kQB), m = i1 - i0, nk = round_up(i1, kNR);
      // P block [m x nk]: saved or recomputed; zero above the diagonal and in the padding.
      if (!probs_bh) small_gemm(m, nk, D, Q + i0 * Dp, Dp, Kt, Tp, P, Tp, false);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t i = i0 + r, len = i + 1;
        float* p = P + r * Tp;
        if (probs_bh) {
          std::memcpy(p, probs_bh + i * T, static_cast<size_t>(len) * sizeof(float));
        } else {
          const float l = lse_bh[i];
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) p[j] = exp_f32(p[j] * g.scale - l);
        }
        std::fill(p + len, p + nk, 0.0f);
      }
      // dP = dO_blk Vt; dS = P (dP - D_i) / sqrt(D)   (the 1/sqrt(D) of dq and dk folded in)
      small_gemm(m, nk, D, dO + i0 * Dp, Dp, Vt, Tp, dS, Tp, false);
      for (int64_t r = 0; r < m; ++r) {
        const float* p = P + r * Tp;
        float* ds = dS + r * Tp;
        const float di = Dv[i0 + r];
#pragma omp simd
        for (int64_t j = 0; j < nk; ++j) ds[j] = p[j] * (ds[j] - di) * g.scale;
      }
      // dQ_blk = dS K
      small_gemm(m, Dp, i1, dS, Tp, K, Dp, dQ, Dp, false);
      for (int64_t r = 0; r < m; ++r)
        std::memcpy(dqkv + (b * T + i0 + r) * g.C3 + h * D, dQ + r * Dp,
                    static_cast<size_t>(D) * sizeof(float));
      // dK[0:nk] += dS^T Q_blk;  dV[0:nk] += P^T dO_blk
      transpose(dSt, kQB, dS, Tp, m, nk);
      transpose(Pt, kQB, P, Tp, m, nk);
      small_gemm(nk, Dp, m, dSt, kQB, Q + i0 * Dp, Dp, dK, Dp, true);
      small_gemm(nk, Dp, m, Pt, kQB, dO + i0 * Dp, Dp, dV, Dp, true);
    }
    for (int64_t t = 0; t < T; ++t) {
      float* row = dqkv + (b * T + t) * g.C3 + h * D;
      std::memcpy(row + g.HD, dK + t * Dp, static_cast<size_t>(D) * sizeof(float));
      std::memcpy(row + 2 * g.HD, dV + t * Dp, static_cast<size_t>(D) * sizeof(float));
    }
  }
}

}  // namespace tandem::kernels::cpu
