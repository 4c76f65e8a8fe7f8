// Tests of the mixed-precision (bf16) kernels on the CPU backend, where they are the reference
// the CUDA parity tests compare with: bf16 rounding itself (IEEE round-to-nearest-even, and the
// same bits as CUDA's own conversion), cast, gemm_bf16 and its epilogues against a double
// GEMM of the same bf16 inputs within the fp32-accumulation bound (tests/kernels/
// bf16_reference.h), the bf16 linear layer (operands really rounded, gradients accumulated in
// fp32), and the bf16-output LayerNorm and GELU (bit for bit the fp32 result, rounded once).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cast.h"
#include "kernels/gelu.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "runtime/core/backend.h"
#include "tests/kernels/bf16_reference.h"
#include "tests/kernels/gradcheck.h"
#ifdef TANDEM_HAVE_CUDA
#include <cuda_bf16.h>
#endif

namespace tandem::kernels {
namespace {

using testing::gamma_acc;
using testing::kAccUnit;
using testing::kBf16Unit;
using testing::random_bf16;
using testing::random_tensor;
using testing::widen;

uint16_t bits_of(float f) { return f32_to_bf16(f).bits; }
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(bits_of(1.0f), 0x3f80);
  EXPECT_EQ(bits_of(from_bits(0x3f808000)), 0x3f80);  // 1 + 2^-8: a tie, kept even
  EXPECT_EQ(bits_of(from_bits(0x3f818000)), 0x3f82);  // 1 + 3 2^-8: a tie, rounded up to even
  EXPECT_EQ(bits_of(from_bits(0x3f808001)), 0x3f81);  // just above the tie: up
  EXPECT_EQ(bits_of(from_bits(0x3f807fff)), 0x3f80);  // just below: down
  EXPECT_EQ(bits_of(-2.5f), 0xc020);
  EXPECT_EQ(bits_of(-0.0f), 0x8000);
  EXPECT_EQ(bits_of(std::numeric_limits<float>::max()), 0x7f80);  // overflows to +inf
  EXPECT_EQ(bits_of(from_bits(0x7f7f7fff)), 0x7f7f);             // the largest bf16 stays
  EXPECT_EQ(bits_of(INFINITY), 0x7f80);
  EXPECT_EQ(bits_of(-INFINITY), 0xff80);
  EXPECT_EQ(bits_of(from_bits(0x00000001)), 0x0000);  // the smallest subnormal rounds to 0
  EXPECT_EQ(bits_of(from_bits(0x00018000)), 0x0002);  // subnormal tie, up to even
  const uint16_t nan = bits_of(std::nanf(""));
  EXPECT_TRUE(std::isnan(bf16_to_f32(bf16{nan})));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(from_bits(0x7f800001)))));  // signalling NaN
  EXPECT_EQ(bf16_to_f32(bf16{0x3f81}), 1.0078125f);  // widening is exact
}

TEST(Bf16, SameBitsAsCudasConversion) {
#ifndef TANDEM_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA: no __float2bfloat16_rn to compare with";
#else
  // Every 2^8-th fp32 bit pattern (all exponents, 2^24 mantissas and signs), plus the
  // neighbourhood of every rounding boundary of the exponent 0 range.
  int64_t checked = 0;
  auto check = [&](uint32_t u) {
    const float f = from_bits(u);
    const __nv_bfloat16 c = __float2bfloat16_rn(f);
    uint16_t cb;
    std::memcpy(&cb, &c, 2);
    const uint16_t ours = bits_of(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(bf16_to_f32(bf16{ours}))) << std::hex << u;
    } else {
      ASSERT_EQ(ours, cb) << "fp32 bits 0x" << std::hex << u;
    }
    ++checked;
  };
  for (uint64_t u = 0; u <= 0xffffffffull; u += 251) check(static_cast<uint32_t>(u));
  for (uint32_t hi = 0x3f80; hi < 0x4000; ++hi)
    for (uint32_t lo : {0x7ffeu, 0x7fffu, 0x8000u, 0x8001u}) check(hi << 16 | lo);
  EXPECT_GT(checked, 17000000);
#endif
}

TEST(Cast, RoundTripsAndBoundsTheError) {
  auto be = make_cpu_backend(2);
  Tensor x = random_tensor(*be, {1001}, 11, -40.f, 40.f);
  Tensor h = to_bf16(*be, x);
  ASSERT_EQ(h.dtype(), DType::BF16);
  Tensor back = to_f32(*be, h);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float a = x.f32()[i], b = back.f32()[i];
    ASSERT_LE(std::fabs(a - b), std::ldexp(std::fabs(a), -8)) << i;  // half a unit: <= 2^-8 |x|
    ASSERT_EQ(b, round_bf16(a)) << i;
  }
  Tensor again = to_bf16(*be, back);  // bf16 values survive a second trip unchanged
  EXPECT_EQ(std::memcmp(again.raw(), h.raw(), h.nbytes()), 0);
  EXPECT_EQ(to_bf16(*be, h).raw(), h.raw());  // already bf16: the same tensor
  Tensor small = be->empty({3}, DType::I32);
  EXPECT_THROW(cast(*be, small, x.flat_range(0, {3})), Error);
}

// ------------------------------------------------------------------ gemm_bf16 (the reference)

TEST(GemmBf16, WithinTheFp32AccumulationBound) {
  auto be = make_cpu_backend(2);
  struct Case {
    int64_t M, N, K;
  };
  for (Case c : {Case{37, 29, 53}, Case{16, 64, 300}}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const std::string tag = " M" + std::to_string(c.M) + " N" + std::to_string(c.N) + " K" +
                                std::to_string(c.K) + " ta" + std::to_string(ta) + " tb" +
                                std::to_string(tb);
        Tensor A = random_bf16(*be, ta ? Shape{c.K, c.M} : Shape{c.M, c.K}, 1);
        Tensor B = random_bf16(*be, tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, 2);
        const testing::GemmRef r = testing::gemm_ref(A, ta, B, tb);
        const double g = gamma_acc(c.K);
        // fp32 output with alpha and beta.
        Tensor C0 = random_tensor(*be, {c.M, c.N}, 3);
        Tensor D = be->empty({c.M, c.N});
        be->copy(D, C0);
        gemm_bf16(*be, D, A, ta, B, tb, Epilogue::None, nullptr, nullptr, 0.75f, 0.5f);
        std::vector<double> want(r.value.size()), bound(r.value.size());
        for (size_t i = 0; i < want.size(); ++i) {
          want[i] = 0.75 * r.value[i] + 0.5 * C0.f32()[i];
          bound[i] = 0.75 * g * r.absum[i] + 2 * kAccUnit * (0.75 * r.absum[i] + 0.5 * std::fabs(C0.f32()[i]));
        }
        testing::expect_within(widen(D), want, bound, "gemm_bf16 f32 out, alpha/beta" + tag);
        // bf16 output: the fp32 result rounded once more.
        Tensor Dh = be->empty({c.M, c.N}, DType::BF16);
        gemm_bf16(*be, Dh, A, ta, B, tb);
        for (size_t i = 0; i < want.size(); ++i)
          bound[i] = g * r.absum[i] + kBf16Unit * (std::fabs(r.value[i]) + g * r.absum[i]);
        testing::expect_within(widen(Dh), r.value, bound, "gemm_bf16 bf16 out" + tag);
      }
  }
}

TEST(GemmBf16, EpiloguesFollowTheirDefinitions) {
  auto be = make_cpu_backend(2);
  const int64_t M = 40, N = 48, K = 96;
  Tensor A = random_bf16(*be, {M, K}, 4), B = random_bf16(*be, {N, K}, 5);
  Tensor bias = random_bf16(*be, {N}, 6, -0.5f, 0.5f);
  const testing::GemmRef r = testing::gemm_ref(A, false, B, true);
  const std::vector<double> b = widen(bias);
  const double g = gamma_acc(K);
  const size_t n = r.value.size();
  std::vector<double> pre(n), epre(n), want(n), bound(n);
  for (size_t i = 0; i < n; ++i) {
    pre[i] = r.value[i] + b[i % N];
    epre[i] = g * r.absum[i] + 2 * kAccUnit * (r.absum[i] + std::fabs(b[i % N]));
  }
  // Bias
  Tensor D = be->empty({M, N}, DType::BF16);
  gemm_bf16(*be, D, A, false, B, true, Epilogue::Bias, &bias);
  for (size_t i = 0; i < n; ++i) bound[i] = epre[i] + kBf16Unit * (std::fabs(pre[i]) + epre[i]);
  testing::expect_within(widen(D), pre, bound, "bias epilogue");
  // GeluAuxBias: aux = round(pre), D = round(gelu(pre)); |gelu'| <= 1.13.
  Tensor aux = be->empty({M, N}, DType::BF16);
  gemm_bf16(*be, D, A, false, B, true, Epilogue::GeluAuxBias, &bias, &aux);
  testing::expect_within(widen(aux), pre, bound, "gelu_aux_bias aux (the GELU input)");
  for (size_t i = 0; i < n; ++i) {
    want[i] = testing::gelu_ref(pre[i]);
    bound[i] = 1.13 * epre[i] + 1e-6 * std::fabs(pre[i]) + kBf16Unit * std::fabs(want[i]) + 1e-7;
  }
  testing::expect_within(widen(D), want, bound, "gelu_aux_bias out");
  // DGelu: D = AB * gelu'(aux) with a given aux.
  Tensor pre_in = random_bf16(*be, {M, N}, 7, -3.f, 3.f);
  const std::vector<double> a = widen(pre_in);
  gemm_bf16(*be, D, A, false, B, true, Epilogue::DGelu, nullptr, &pre_in);
  for (size_t i = 0; i < n; ++i) {
    const double d = testing::gelu_grad_ref(a[i]);
    want[i] = r.value[i] * d;
    bound[i] = std::fabs(d) * g * r.absum[i] + 1e-6 * std::fabs(r.value[i]) +
               kBf16Unit * std::fabs(want[i]) + 1e-7;
  }
  testing::expect_within(widen(D), want, bound, "dgelu out");
  // Misuse is refused with the tensors named.
  Tensor f32 = be->empty({M, N});
  EXPECT_THROW(gemm_bf16(*be, f32, A, false, B, true, Epilogue::Bias, &bias), Error);  // bias dtype
  EXPECT_THROW(gemm_bf16(*be, D, A, false, B, true, Epilogue::GeluAuxBias, &bias), Error);  // no aux
  EXPECT_THROW(gemm_bf16(*be, D, A, false, B, true, Epilogue::None, nullptr, nullptr, 1.f, 1.f),
               Error);  // beta with a bf16 output
}

// ------------------------------------------------------------------ linear layers

TEST(LinearBf16, RoundsTheActivationsAndAccumulatesGradientsInFp32) {
  auto be = make_cpu_backend(2);
  const int64_t N = 24, in = 40, out = 32;
  Tensor x = random_tensor(*be, {N, in}, 8), dy = random_tensor(*be, {N, out}, 9);
  Tensor W = random_bf16(*be, {out, in}, 10, -0.3f, 0.3f);
  Tensor b = random_tensor(*be, {out}, 11);
  // Forward: the fp32 x is rounded to bf16 first, the fp32 bias added in fp32.
  Tensor y = be->empty({N, out}), want = be->empty({N, out});
  linear_forward(*be, y, x, W, &b);
  Tensor x16 = to_bf16(*be, x);
  gemm_bf16(*be, want, x16, false, W, true, Epilogue::Bias, &b);
  EXPECT_EQ(std::memcmp(y.raw(), want.raw(), y.nbytes()), 0) << "linear_forward must round x";
  // Backward: dW and db accumulate in fp32; db sums the fp32 dy exactly as the fp32 path does;
  // dx is overwritten or accumulated.
  Tensor dW0 = random_tensor(*be, {out, in}, 12), db0 = random_tensor(*be, {out}, 13);
  Tensor dx0 = random_tensor(*be, {N, in}, 14);
  for (bool acc : {false, true}) {
    Tensor dW = be->empty({out, in}), db = be->empty({out}), dx = be->empty({N, in});
    be->copy(dW, dW0);
    be->copy(db, db0);
    be->copy(dx, dx0);
    linear_backward(*be, &dx, dW, &db, dy, x, W, acc);
    Tensor dy16 = to_bf16(*be, dy);
    const testing::GemmRef rw = testing::gemm_ref(dy16, true, x16, false);
    const testing::GemmRef rx = testing::gemm_ref(dy16, false, W, false);
    std::vector<double> want_w(rw.value.size()), bw(rw.value.size());
    for (size_t i = 0; i < want_w.size(); ++i) {
      want_w[i] = dW0.f32()[i] + rw.value[i];
      bw[i] = gamma_acc(N) * rw.absum[i] + 2 * kAccUnit * (rw.absum[i] + std::fabs(dW0.f32()[i]));
    }
    testing::expect_within(widen(dW), want_w, bw, "linear_backward dW += dy^T x (bf16 operands)");
    Tensor db_ref = be->empty({out});
    be->copy(db_ref, db0);
    bias_backward(*be, db_ref, dy);
    EXPECT_EQ(std::memcmp(db.raw(), db_ref.raw(), db.nbytes()), 0) << "db from the fp32 dy";
    std::vector<double> want_x(rx.value.size()), bx(rx.value.size());
    for (size_t i = 0; i < want_x.size(); ++i) {
      const double base = acc ? dx0.f32()[i] : 0.0;
      want_x[i] = base + rx.value[i];
      bx[i] = gamma_acc(out) * rx.absum[i] + 2 * kAccUnit * (rx.absum[i] + std::fabs(base));
    }
    testing::expect_within(widen(dx), want_x, bx, acc ? "linear_backward dx +=" : "linear_backward dx =");
  }
}

TEST(LinearBf16, FusedGeluLayerAgreesWithFp32WithinBf16Rounding) {
  auto be = make_cpu_backend(2);
  const int64_t N = 32, in = 64, hid = 96;
  Tensor x = random_tensor(*be, {N, in}, 15), W = random_tensor(*be, {hid, in}, 16, -0.2f, 0.2f);
  Tensor b = random_tensor(*be, {hid}, 17, -0.2f, 0.2f);
  Tensor out32 = be->empty({N, hid}), pre32 = be->empty({N, hid});
  linear_gelu_forward(*be, out32, pre32, x, W, b);  // fp32: linear + gelu, unchanged ops
  Tensor W16 = to_bf16(*be, W), b16 = to_bf16(*be, b);
  Tensor out16 = be->empty({N, hid}, DType::BF16), pre16 = be->empty({N, hid}, DType::BF16);
  linear_gelu_forward(*be, out16, pre16, x, W16, b16);
  // Rounding x and W (2^-8 each) moves each product by at most 2^-7 (+2^-16) of its size, the
  // bias by 2^-8; both sides then accumulate (gamma each); the outputs are rounded (2^-7).
  const testing::GemmRef r = testing::gemm_ref(x, false, W, true);
  const std::vector<double> p32 = widen(pre32), o32 = widen(out32);
  std::vector<double> bp(p32.size()), bo(p32.size());
  for (size_t i = 0; i < p32.size(); ++i) {
    const double e = (std::ldexp(1.0, -7) + std::ldexp(1.0, -16) + 2 * gamma_acc(in)) * r.absum[i] +
                     std::ldexp(std::fabs(b.f32()[i % hid]), -8) + 1e-7;
    bp[i] = e + kBf16Unit * (std::fabs(p32[i]) + e);
    bo[i] = 1.13 * e + kBf16Unit * (std::fabs(o32[i]) + 1.13 * e) + 1e-6;
  }
  testing::expect_within(widen(pre16), p32, bp, "bf16 pre-activation vs fp32");
  testing::expect_within(widen(out16), o32, bo, "bf16 gelu output vs fp32");

  // Backward of the next layer through the GELU: dpre = (dy W2) * gelu'(pre).
  const int64_t out = 48;
  Tensor W2 = random_bf16(*be, {out, hid}, 18, -0.2f, 0.2f), dy = random_tensor(*be, {N, out}, 19);
  Tensor dW = be->zeros({out, hid}), db = be->zeros({out});
  Tensor dpre = be->empty({N, hid}, DType::BF16);
  linear_backward_dgelu(*be, dpre, dW, db, dy, out16, W2, pre16);
  Tensor dy16 = to_bf16(*be, dy);
  const testing::GemmRef rd = testing::gemm_ref(dy16, false, W2, false);
  const std::vector<double> pv = widen(pre16);
  std::vector<double> want(rd.value.size()), bd(rd.value.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = testing::gelu_grad_ref(pv[i]);
    want[i] = rd.value[i] * d;
    bd[i] = std::fabs(d) * gamma_acc(out) * rd.absum[i] + 1e-6 * std::fabs(rd.value[i]) +
            kBf16Unit * std::fabs(want[i]) + 1e-7;
  }
  testing::expect_within(widen(dpre), want, bd, "linear_backward_dgelu dpre");
  Tensor db_ref = be->zeros({out});
  bias_backward(*be, db_ref, dy);
  EXPECT_EQ(std::memcmp(db.raw(), db_ref.raw(), db.nbytes()), 0);
  const testing::GemmRef rw = testing::gemm_ref(dy16, true, out16, false);
  std::vector<double> bw(rw.value.size());
  for (size_t i = 0; i < bw.size(); ++i) bw[i] = gamma_acc(N) * rw.absum[i] + 2 * kAccUnit * rw.absum[i];
  testing::expect_within(widen(dW), rw.value, bw, "linear_backward_dgelu dW");
}

// ------------------------------------------------------------------ bf16 outputs of fp32 ops

TEST(LayerNormBf16, IsTheFp32ResultRoundedOnce) {
  auto be = make_cpu_backend(2);
  for (int64_t C : {int64_t{48}, int64_t{1001}}) {
    const int64_t N = 70;
    Tensor x = random_tensor(*be, {N, C}, 20, -2.f, 3.f), w = random_tensor(*be, {C}, 21, 0.5f, 1.5f);
    Tensor b = random_tensor(*be, {C}, 22);
    Tensor o32 = be->empty({N, C}), m32 = be->empty({N}), r32 = be->empty({N});
    Tensor o16 = be->empty({N, C}, DType::BF16), m16 = be->empty({N}), r16 = be->empty({N});
    layernorm_forward(*be, o32, m32, r32, x, w, b);
    layernorm_forward(*be, o16, m16, r16, x, w, b);
    Tensor want = to_bf16(*be, o32);
    EXPECT_EQ(std::memcmp(o16.raw(), want.raw(), want.nbytes()), 0) << "C " << C;
    EXPECT_EQ(std::memcmp(m16.raw(), m32.raw(), m32.nbytes()), 0) << "mean stays fp32, C " << C;
    EXPECT_EQ(std::memcmp(r16.raw(), r32.raw(), r32.nbytes()), 0) << "rstd stays fp32, C " << C;
  }
}

TEST(GeluBf16, IsTheFp32ResultOfTheWidenedInputRounded) {
  auto be = make_cpu_backend(2);
  Tensor x16 = random_bf16(*be, {70001}, 23, -6.f, 6.f);
  Tensor x32 = to_f32(*be, x16), g32 = be->empty({70001});
  gelu_forward(*be, g32, x32);
  Tensor g16 = be->empty({70001}, DType::BF16);
  gelu_forward(*be, g16, x16);
  Tensor want = to_bf16(*be, g32);
  EXPECT_EQ(std::memcmp(g16.raw(), want.raw(), want.nbytes()), 0);
  Tensor f32_out = be->empty({70001});
  EXPECT_THROW(gelu_forward(*be, f32_out, x16), Error);  // mixed dtypes are refused
}

TEST(BiasBackwardBf16, SumsTheWidenedGradient) {
  auto be = make_cpu_backend(2);
  Tensor dy16 = random_bf16(*be, {300, 75}, 24);
  Tensor dy32 = to_f32(*be, dy16);
  Tensor db0 = random_tensor(*be, {75}, 25);
  Tensor a = be->empty({75}), c = be->empty({75});
  be->copy(a, db0);
  be->copy(c, db0);
  bias_backward(*be, a, dy16);
  bias_backward(*be, c, dy32);
  EXPECT_EQ(std::memcmp(a.raw(), c.raw(), a.nbytes()), 0);
}

}  // namespace
}  // namespace tandem::kernels
