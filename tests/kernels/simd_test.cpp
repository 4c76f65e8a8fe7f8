// Tests for kernels/cpu/simd.h: the vector exp against std::exp in double over its whole range
// and at its edges (underflow to 0, overflow to +inf, NaN), every lane computing the same
// function (a lane's result does not depend on its position), and partial loads and stores
// that never touch memory past n.
#include "kernels/cpu/simd.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <vector>

namespace tandem::kernels::cpu::simd {
namespace {

float exp1(float x) { return vexp(splat(x))[0]; }  // one lane of the vector exp

TEST(Simd, ExpRelativeErrorOverRange) {
  double worst = 0.0;
  float worst_x = 0.0f;
  for (float x0 = -87.0f; x0 < 88.0f; x0 += 0.0137f * kLanes) {
    VF x;
    for (int l = 0; l < kLanes; ++l) x[l] = x0 + 0.0137f * l;
    const VF e = vexp(x);
    for (int l = 0; l < kLanes; ++l) {
      const double ref = std::exp(static_cast<double>(x[l]));
      const double rel = std::abs(e[l] - ref) / ref;
      if (rel > worst) worst = rel, worst_x = x[l];
    }
  }
  EXPECT_LT(worst, 4e-7) << "worst relative error " << worst << " at x = " << worst_x;
}

TEST(Simd, ExpEdges) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(exp1(0.0f), 1.0f);
  EXPECT_EQ(exp1(-inf), 0.0f);
  EXPECT_EQ(exp1(-100.0f), 0.0f);
  EXPECT_EQ(exp1(inf), inf);
  EXPECT_EQ(exp1(100.0f), inf);
  EXPECT_TRUE(std::isnan(exp1(nan)));
  // just inside the range: finite, normal and accurate
  EXPECT_NEAR(exp1(-87.0f) / std::exp(-87.0), 1.0, 1e-6);
  EXPECT_NEAR(exp1(88.0f) / std::exp(88.0), 1.0, 1e-6);
}

TEST(Simd, EveryLaneComputesTheSameExp) {
  VF x;
  for (int l = 0; l < kLanes; ++l) x[l] = -20.0f + 2.7f * l;
  const VF e = vexp(x);
  for (int l = 0; l < kLanes; ++l)
    EXPECT_EQ(std::bit_cast<uint32_t>(exp1(x[l])), std::bit_cast<uint32_t>(e[l])) << "lane " << l;
}

TEST(Simd, PartialLoadsAndStoresStayInBounds) {
  std::vector<float> buf(3 * kLanes, 7.0f);
  float* p = buf.data() + kLanes;  // guard vectors on both sides
  for (int n = 0; n <= kLanes; ++n) {
    for (int i = 0; i < kLanes; ++i) p[i] = static_cast<float>(i);
    const VF whole = load_n(p, n, -1.0f);
    for (int l = 0; l < kLanes; ++l) EXPECT_EQ(whole[l], l < n ? static_cast<float>(l) : -1.0f);
    const VF v = load_partial(p, n, -1.0f);
    for (int l = 0; l < kLanes; ++l) EXPECT_EQ(v[l], l < n ? static_cast<float>(l) : -1.0f);
    store_partial(p, splat(5.0f), n);
    for (int i = 0; i < kLanes; ++i) EXPECT_EQ(p[i], i < n ? 5.0f : static_cast<float>(i));
    for (int i = 0; i < kLanes; ++i) {
      EXPECT_EQ(buf[i], 7.0f);
      EXPECT_EQ(buf[2 * kLanes + i], 7.0f);
    }
  }
}

TEST(Simd, HorizontalReductions) {
  VF v;
  for (int l = 0; l < kLanes; ++l) v[l] = (l % 3 == 0 ? -1.0f : 1.0f) * l;
  float sum = 0.0f, mx = -1e30f;
  for (int l = 0; l < kLanes; ++l) sum += v[l], mx = std::max(mx, v[l]);
  EXPECT_EQ(hsum(v), sum);
  EXPECT_EQ(hmax(v), mx);
}

}  // namespace
}  // namespace tandem::kernels::cpu::simd
