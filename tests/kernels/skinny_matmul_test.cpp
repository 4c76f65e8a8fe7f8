// Tests for cpu::linear_forward_skinny (kernels/matmul.h): against a naive double-precision
// x W^T + b for every row count the decode path uses, sizes that are not multiples of the
// vector width or of the 4-row blocks, real GPT-2 shapes, with and without bias; and
// linear_forward on the CPU backend for M <= 16 (skinny) and M = 17 (sgemm) both matching.
// Tolerance: fp32 vs double over `in` products of values in [-1, 1); the rounding error of
// such a sum grows like sqrt(in): atol 1.6e-6 sqrt(in) + rtol 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

std::vector<double> naive_linear(const float* x, const float* W, const float* b, int64_t M,
                                 int64_t in, int64_t out) {
  std::vector<double> y(M * out);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? b[o] : 0.0;
      for (int64_t k = 0; k < in; ++k) s += double(x[m * in + k]) * W[o * in + k];
      y[m * out + o] = s;
    }
  return y;
}

double atol_for(int64_t in) { return 1.6e-6 * std::sqrt(double(in)); }

TEST(SkinnyMatmul, MatchesNaiveDouble) {
  auto be = make_cpu_backend(2);
  struct Size {
    int64_t in, out;
  };
  uint32_t seed = 1;
  for (Size sz : {Size{37, 19}, Size{1, 5}, Size{16, 4}, Size{33, 7}, Size{768, 2304},
                  Size{3072, 65}}) {
    for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 13, 16}) {
      Tensor x = random_tensor(*be, {M, sz.in}, seed++);
      Tensor W = random_tensor(*be, {sz.out, sz.in}, seed++);
      Tensor b = random_tensor(*be, {sz.out}, seed++);
      for (bool bias : {false, true}) {
        Tensor y = be->empty({M, sz.out});
        cpu::linear_forward_skinny(y.f32(), x.f32(), W.f32(), bias ? b.f32() : nullptr, M, sz.in,
                                   sz.out);
        const std::vector<double> ref =
            naive_linear(x.f32(), W.f32(), bias ? b.f32() : nullptr, M, sz.in, sz.out);
        TANDEM_EXPECT_CLOSE(y.f32(), ref.data(), y.numel(), atol_for(sz.in), 1e-5,
                            "M " + std::to_string(M) + " in " + std::to_string(sz.in) + " out " +
                                std::to_string(sz.out) + (bias ? " +b" : ""));
      }
    }
  }
}

// A row's output is the same bits whatever batch it is in (the register blocks of 4 x rows and
// the 1..3-row tails, and the AVX-512 4 x 4 block, sum in one order): a decode token does not
// change with the other sequences in its step.
TEST(SkinnyMatmul, RowResultsDoNotDependOnTheBatch) {
  auto be = make_cpu_backend(2);
  for (int64_t in : {37, 768}) {
    const int64_t out = 19, M = 13;
    Tensor x = random_tensor(*be, {M, in}, 90 + static_cast<uint32_t>(in));
    Tensor W = random_tensor(*be, {out, in}, 91);
    std::vector<float> all(M * out), one(out);
    cpu::linear_forward_skinny(all.data(), x.f32(), W.f32(), nullptr, M, in, out);
    for (int64_t m = 0; m < M; ++m) {
      cpu::linear_forward_skinny(one.data(), x.f32() + m * in, W.f32(), nullptr, 1, in, out);
      for (int64_t o = 0; o < out; ++o)
        ASSERT_EQ(one[o], all[m * out + o]) << "in " << in << " row " << m << " output " << o;
    }
  }
}

// Empty sizes: M = 0 or out = 0 write nothing; in = 0 gives the bias (or zeros).
TEST(SkinnyMatmul, EmptySizes) {
  auto be = make_cpu_backend(1);
  Tensor b = random_tensor(*be, {3}, 4);
  std::vector<float> y(6, 42.f);
  cpu::linear_forward_skinny(y.data(), nullptr, nullptr, b.f32(), 0, 5, 3);
  cpu::linear_forward_skinny(y.data(), nullptr, nullptr, nullptr, 2, 5, 0);
  EXPECT_EQ(y, std::vector<float>(6, 42.f));
  cpu::linear_forward_skinny(y.data(), nullptr, nullptr, b.f32(), 2, 0, 3);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y[i], b.f32()[i % 3]) << i;
  cpu::linear_forward_skinny(y.data(), nullptr, nullptr, nullptr, 2, 0, 3);
  EXPECT_EQ(y, std::vector<float>(6, 0.f));
}

// The dispatch in linear_forward: M <= 16 takes the skinny kernel, M = 17 OpenBLAS; both
// equal the naive reference, and the skinny rows equal the direct call bit for bit.
TEST(SkinnyMatmul, LinearForwardDispatchBothSides) {
  auto be = make_cpu_backend(2);
  const int64_t in = 768, out = 130;
  Tensor W = random_tensor(*be, {out, in}, 7), b = random_tensor(*be, {out}, 8);
  for (int64_t M : {1, 4, 16, 17}) {
    Tensor x = random_tensor(*be, {M, in}, 9 + static_cast<uint32_t>(M));
    Tensor y = be->empty({M, out});
    linear_forward(*be, y, x, W, &b);
    const std::vector<double> ref = naive_linear(x.f32(), W.f32(), b.f32(), M, in, out);
    TANDEM_EXPECT_CLOSE(y.f32(), ref.data(), y.numel(), atol_for(in), 1e-5,
                        "linear_forward M " + std::to_string(M));
    if (M <= cpu::kSkinnyRows) {
      std::vector<float> direct(M * out);
      cpu::linear_forward_skinny(direct.data(), x.f32(), W.f32(), b.f32(), M, in, out);
      EXPECT_EQ(testing::to_vector(y), direct) << "M " << M;
    }
  }
  // A bias of the wrong length is still rejected on the skinny path.
  Tensor x = random_tensor(*be, {2, in}, 3), y = be->empty({2, out}), bad = be->empty({out + 1});
  EXPECT_THROW(linear_forward(*be, y, x, W, &bad), Error);
}

}  // namespace
}  // namespace tandem::kernels
