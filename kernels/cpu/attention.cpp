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
// AVX-512, AVX or 128-bit wide) over blocks of kQB query rows, touching only the causal part
// (0 <= j < end of the block). No BLAS here: this code runs inside OpenMP regions.
#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/simd.h"
#include "runtime/core/error.h"

namespace tandem::kernels::cpu {

namespace {


#if defined(__AVX512F__)
constexpr int kVW = 16;  // floats per vector register
constexpr int kMR = 8;   // micro-tile rows: 16 accumulators of the 32 registers
#elif defined(__AVX__)
constexpr int kVW = 8;
constexpr int kMR = 4;  // 8 accumulators of the 16 registers
#else
constexpr int kVW = 4;  // SSE and other 128-bit targets
constexpr int kMR = 4;
#endif
typedef float vfloat __attribute__((vector_size(kVW * sizeof(float))));
constexpr int64_t kNR = 2 * kVW;  // micro-tile columns (two vectors)
constexpr int64_t kQB = 32;       // query rows per block (a multiple of kMR)
constexpr int64_t kKC = 256;      // k-chunk of the products, so a B panel stays in L1
static_assert(kQB % kMR == 0);

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

inline vfloat vload(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// A operand of a product, element (r, p) at ptr[r * rs + p * ks]: rs = lda, ks = 1 for a
// row-major A; rs = 1, ks = lda to use the transpose of a row-major matrix without copying.
struct AOp {
  const float* ptr;
  int64_t rs, ks;
  AOp at(int64_t r, int64_t p) const { return {ptr + r * rs + p * ks, rs, ks}; }
};

// C[MR x kNR] (+)= A[MR x k] * B[k x kNR] (B and C row-major with leading dims ldb, ldc).
template <int MR>
inline void micro_kernel(int64_t k, AOp A, const float* B, int64_t ldb, float* C, int64_t ldc,
                         bool accumulate) {
  vfloat c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) c0[r] = c1[r] = vfloat{};
  for (int64_t p = 0; p < k; ++p) {
    vfloat b0 = vload(B + p * ldb), b1 = vload(B + p * ldb + kVW);
#if defined(__GNUC__) && defined(__AVX__)
    // Keep the B row in registers: otherwise GCC folds a load into every FMA.
    __asm__("" : "+v"(b0), "+v"(b1));
#endif
    const float* a = A.ptr + p * A.ks;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const float av = a[r * A.rs];
      c0[r] += av * b0;
      c1[r] += av * b1;
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

// C[m x n] (+)= A[m x k] * B[k x n], B and C row-major, n a multiple of kNR. k runs in chunks
// of kKC so that a kKC x kNR panel of B is reused from L1 across the rows of A.
void small_gemm(int64_t m, int64_t n, int64_t k, AOp A, const float* B, int64_t ldb, float* C,
                int64_t ldc, bool accumulate) {
  for (int64_t p0 = 0; p0 < k || p0 == 0; p0 += kKC) {
    const int64_t kc = std::min(kKC, k - p0);
    const bool acc = accumulate || p0 > 0;
    for (int64_t j = 0; j < n; j += kNR) {
      const float* Bp = B + p0 * ldb + j;
      int64_t i = 0;
      for (; i + kMR <= m; i += kMR)
        micro_kernel<kMR>(kc, A.at(i, p0), Bp, ldb, C + i * ldc + j, ldc, acc);
      for (; i < m; ++i) micro_kernel<1>(kc, A.at(i, p0), Bp, ldb, C + i * ldc + j, ldc, acc);
    }
  }
}

// s[0..len) <- softmax(scale * s[0..len)); returns log sum exp(scale * s).
float softmax_row(float* s, int64_t len, float scale) {
  using simd::kLanes;
  using simd::VF;
  const float ninf = -__builtin_inff();  // lanes past the row: out of the max, exp gives 0
  const VF sc = simd::splat(scale);
  VF mv = simd::splat(ninf);
  for (int64_t j = 0; j < len; j += kLanes) {
    const VF x = sc * simd::load_n(s + j, len - j, ninf);
    simd::store_n(s + j, x, len - j);
    mv = simd::vmax(mv, x);
  }
  const float mx = simd::hmax(mv);
  const VF m = simd::splat(mx);
  VF sum{};
  for (int64_t j = 0; j < len; j += kLanes) {
    const VF e = simd::vexp(simd::load_n(s + j, len - j, ninf) - m);
    simd::store_n(s + j, e, len - j);
    sum += e;
  }
  const float total = simd::hsum(sum);
  const VF inv = simd::splat(1.0f / total);
  for (int64_t j = 0; j < len; j += kLanes)
    simd::store_n(s + j, inv * simd::load_n(s + j, len - j, 0.0f), len - j);
  return mx + std::log(total);
}

// p[0..len) <- exp(scale * p - lse): the probabilities recomputed from the scores.
void exp_row(float* p, int64_t len, float scale, float lse) {
  const simd::VF sc = simd::splat(scale), l = simd::splat(lse);
  for (int64_t j = 0; j < len; j += simd::kLanes)
    simd::store_n(p + j, simd::vexp(sc * simd::load_n(p + j, len - j, 0.0f) - l), len - j);
}

inline AOp rows_of(const float* A, int64_t lda) { return {A, lda, 1}; }
inline AOp transposed(const float* A, int64_t lda) { return {A, 1, lda}; }

// Problem geometry and per-thread scratch layout.
struct Geometry {
  int64_t B, T, H, D;
  int64_t Tp, Dp;  // T and D rounded up to kNR (zero padding)
  int64_t Tl;      // leading dim of key-indexed rows: Tp + 16, never a multiple of 4 KiB, so
                   // the rows of a panel do not all fall into the same cache sets
  int64_t C3, HD;  // qkv row width, out row width
  float scale;
  Geometry(int64_t B_, int64_t T_, int64_t H_, int64_t D_)
      : B(B_),
        T(T_),
        H(H_),
        D(D_),
        Tp(round_up(T_, kNR)),
        Dp(round_up(D_, kNR)),
        Tl(Tp + 16),
        C3(3 * H_ * D_),
        HD(H_ * D_),
        scale(1.0f / std::sqrt(static_cast<float>(D_))) {}
  // Rows [0, T) of one head's slice `part` (0 q, 1 k, 2 v) into dst[T x Dp], zero padded.
  void gather_rows(float* dst, const float* qkv, int64_t b, int64_t h, int part) const {
    for (int64_t t = 0; t < T; ++t) {
      const float* src = qkv + (b * T + t) * C3 + part * HD + h * D;
      std::memcpy(dst + t * Dp, src, static_cast<size_t>(D) * sizeof(float));
      std::memset(dst + t * Dp + D, 0, static_cast<size_t>(Dp - D) * sizeof(float));
    }
  }
  // The same slice transposed: dst[Dp x Tl], zero padded. Blocks of 16 tokens: each pass
  // over d writes one full cache line and re-reads lines already in L1.
  void gather_cols(float* dst, const float* qkv, int64_t b, int64_t h, int part) const {
    std::memset(dst, 0, static_cast<size_t>(Dp * Tl) * sizeof(float));
    const float* src = qkv + b * T * C3 + part * HD + h * D;
    for (int64_t t0 = 0; t0 < T; t0 += 16) {
      const int64_t t1 = std::min(T, t0 + 16);
      for (int64_t d = 0; d < D; ++d)
        for (int64_t t = t0; t < t1; ++t) dst[d * Tl + t] = src[t * C3 + d];
    }
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
  Scratch(int threads, size_t floats)
      : buf(static_cast<size_t>(threads) * floats), per_thread(floats) {}
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
  // Q [T x Dp] | Kt [Dp x Tl] | V [Tp x Dp] | S [kQB x Tl] | O [kQB x Dp]
  const size_t szQ = T * g.Dp, szKt = g.Dp * g.Tl, szV = g.Tp * g.Dp, szS = kQB * g.Tl;
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
      small_gemm(m, nk, D, rows_of(Q + i0 * g.Dp, g.Dp), Kt, g.Tl, S, g.Tl, false);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t i = i0 + r, len = i + 1;
        float* s = S + r * g.Tl;
        lse_bh[i] = softmax_row(s, len, g.scale);
        std::fill(s + len, s + nk, 0.0f);
        if (probs_bh) {
          float* prow = probs_bh + i * T;
          std::memcpy(prow, s, static_cast<size_t>(len) * sizeof(float));
          std::fill(prow + len, prow + T, 0.0f);
        }
      }
      small_gemm(m, g.Dp, i1, rows_of(S, g.Tl), V, g.Dp, O, g.Dp, false);
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
  const int64_t BH = B * H, Tp = g.Tp, Tl = g.Tl, Dp = g.Dp;
  const int nt = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), BH));
  // Q [T x Dp] | K [Tp x Dp] | Kt [Dp x Tl] | Vt [Dp x Tl] | dO [T x Dp] | Dv [T]
  // | dK, dV [Tp x Dp] | P, dS [kQB x Tl] | dQ [kQB x Dp]
  const size_t szRows = T * Dp, szPad = Tp * Dp, szCols = Dp * Tl, szBlk = kQB * Tl;
  Scratch scratch(nt, szRows * 2 + szPad * 3 + szCols * 2 + T + szBlk * 2 + kQB * Dp);

#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    float* Q = scratch.of(omp_get_thread_num());
    float* K = Q + szRows;
    float* Kt = K + szPad;
    float* Vt = Kt + szCols;
    float* dO = Vt + szCols;
    float* Dv = dO + szRows;
    float* dK = Dv + T;
    float* dV = dK + szPad;
    float* P = dV + szPad;
    float* dS = P + szBlk;
    float* dQ = dS + szBlk;

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
      if (!probs_bh) small_gemm(m, nk, D, rows_of(Q + i0 * Dp, Dp), Kt, Tl, P, Tl, false);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t i = i0 + r, len = i + 1;
        float* p = P + r * Tl;
        if (probs_bh) {
          std::memcpy(p, probs_bh + i * T, static_cast<size_t>(len) * sizeof(float));
        } else {
          exp_row(p, len, g.scale, lse_bh[i]);
        }
        std::fill(p + len, p + nk, 0.0f);
      }
      // dP = dO_blk Vt; dS = P (dP - D_i) / sqrt(D)   (the 1/sqrt(D) of dq and dk folded in)
      small_gemm(m, nk, D, rows_of(dO + i0 * Dp, Dp), Vt, Tl, dS, Tl, false);
      for (int64_t r = 0; r < m; ++r) {
        const float* p = P + r * Tl;
        float* ds = dS + r * Tl;
        const float di = Dv[i0 + r];
#pragma omp simd
        for (int64_t j = 0; j < nk; ++j) ds[j] = p[j] * (ds[j] - di) * g.scale;
      }
      // dQ_blk = dS K
      small_gemm(m, Dp, i1, rows_of(dS, Tl), K, Dp, dQ, Dp, false);
      for (int64_t r = 0; r < m; ++r)
        std::memcpy(dqkv + (b * T + i0 + r) * g.C3 + h * D, dQ + r * Dp,
                    static_cast<size_t>(D) * sizeof(float));
      // dK[0:nk] += dS^T Q_blk;  dV[0:nk] += P^T dO_blk
      small_gemm(nk, Dp, m, transposed(dS, Tl), Q + i0 * Dp, Dp, dK, Dp, true);
      small_gemm(nk, Dp, m, transposed(P, Tl), dO + i0 * Dp, Dp, dV, Dp, true);
    }
    for (int64_t t = 0; t < T; ++t) {
      float* row = dqkv + (b * T + t) * g.C3 + h * D;
      std::memcpy(row + g.HD, dK + t * Dp, static_cast<size_t>(D) * sizeof(float));
      std::memcpy(row + 2 * g.HD, dV + t * Dp, static_cast<size_t>(D) * sizeof(float));
    }
  }
}

}  // namespace tandem::kernels::cpu
