// Tests for kernels/layernorm.h on the CPU backend: forward values and saved statistics
// against a double-precision loop, gradients of input, weight and bias by central finite
// differences, and the accumulate (+=) contract of backward.
#include "kernels/layernorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/core/backend.h"
#include "tests/kernels/gradcheck.h"

namespace tandem::kernels {
namespace {

using testing::random_tensor;

TEST(LayerNorm, ForwardMatchesNaive) {
  auto be = make_cpu_backend(2);
  // Second shape takes the multi-threaded path; rows carry a large mean (offset 3).
  for (auto [N, C] : {std::pair<int64_t, int64_t>{7, 33}, {64, 768}}) {
    Tensor in = random_tensor(*be, {N, C}, 1, 2.0f, 4.0f);
    Tensor w = random_tensor(*be, {C}, 2, 0.5f, 1.5f), b = random_tensor(*be, {C}, 3);
    Tensor out = be->empty({N, C}), mean = be->empty({N}), rstd = be->empty({N});
    const float eps = 1e-5f;
    layernorm_forward(*be, out, mean, rstd, in, w, b, eps);
    std::vector<double> ref(N * C), rmean(N), rrstd(N);
    for (int64_t n = 0; n < N; ++n) {
      const float* x = in.f32() + n * C;
      double m = 0, v = 0;
      for (int64_t c = 0; c < C; ++c) m += x[c];
      m /= C;
      for (int64_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
      v /= C;
      const double r = 1.0 / std::sqrt(v + eps);
      for (int64_t c = 0; c < C; ++c) ref[n * C + c] = (x[c] - m) * r * w.f32()[c] + b.f32()[c];
      rmean[n] = m;
      rrstd[n] = r;
    }
    TANDEM_EXPECT_CLOSE(out.f32(), ref.data(), N * C, 1e-5, 1e-4, "layernorm out");
    TANDEM_EXPECT_CLOSE(mean.f32(), rmean.data(), N, 1e-6, 1e-6, "layernorm mean");
    TANDEM_EXPECT_CLOSE(rstd.f32(), rrstd.data(), N, 1e-7, 1e-6, "layernorm rstd");
  }
}

// L = sum(out * R). Central differences, eps 1e-3 on inputs of scale ~1, loss evaluated in
// double from the fp32 output: tolerance atol 1e-3 + rtol 1e-2 (fp32 noise in L ~1e-6 / 2e-3).
TEST(LayerNorm, BackwardGradcheck) {
  auto be = make_cpu_backend(2);
  const int64_t N = 5, C = 16;
  Tensor in = random_tensor(*be, {N, C}, 11, -2.0f, 2.0f);
  Tensor w = random_tensor(*be, {C}, 12, 0.5f, 1.5f), b = random_tensor(*be, {C}, 13);
  Tensor R = random_tensor(*be, {N, C}, 14);
  Tensor out = be->empty({N, C}), mean = be->empty({N}), rstd = be->empty({N});
  auto loss = [&] {
    layernorm_forward(*be, out, mean, rstd, in, w, b);
    return testing::dot(out.f32(), R.f32(), out.numel());
  };
  loss();  // saved statistics for the analytic backward
  Tensor din = be->zeros({N, C}), dw = be->zeros({C}), db = be->zeros({C});
  layernorm_backward(*be, din, dw, db, R, in, w, mean, rstd);
  testing::GradCheckOptions opt;  // eps 1e-3, atol 1e-3, rtol 1e-2
  testing::expect_gradient("layernorm din", in.f32(), in.numel(), din.f32(), loss, opt);
  testing::expect_gradient("layernorm dweight", w.f32(), w.numel(), dw.f32(), loss, opt);
  testing::expect_gradient("layernorm dbias", b.f32(), b.numel(), db.f32(), loss, opt);
}

TEST(LayerNorm, BackwardAccumulates) {
  auto be = make_cpu_backend(2);
  const int64_t N = 48, C = 768;  // multi-threaded path, per-thread partial sums
  Tensor in = random_tensor(*be, {N, C}, 21), dout = random_tensor(*be, {N, C}, 22);
  Tensor w = random_tensor(*be, {C}, 23), b = random_tensor(*be, {C}, 24);
  Tensor out = be->empty({N, C}), mean = be->empty({N}), rstd = be->empty({N});
  layernorm_forward(*be, out, mean, rstd, in, w, b);
  Tensor din0 = be->zeros({N, C}), dw0 = be->zeros({C}), db0 = be->zeros({C});
  layernorm_backward(*be, din0, dw0, db0, dout, in, w, mean, rstd);
  // dbias is exactly the column sum of dout.
  std::vector<double> colsum(C, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) colsum[c] += dout.f32()[n * C + c];
  TANDEM_EXPECT_CLOSE(db0.f32(), colsum.data(), C, 1e-5, 1e-5, "dbias = colsum(dout)");

  Tensor din = random_tensor(*be, {N, C}, 25), dw = random_tensor(*be, {C}, 26);
  Tensor db = random_tensor(*be, {C}, 27);
  auto expect_added = [&](const Tensor& before, Tensor& after, const Tensor& fresh,
                          const char* what) {
    std::vector<double> ref(before.numel());
    for (int64_t i = 0; i < before.numel(); ++i) ref[i] = double(before.f32()[i]) + fresh.f32()[i];
    TANDEM_EXPECT_CLOSE(after.f32(), ref.data(), after.numel(), 1e-6, 1e-6, what);
  };
  Tensor din_before = be->empty({N, C}), dw_before = be->empty({C}), db_before = be->empty({C});
  be->copy(din_before, din);
  be->copy(dw_before, dw);
  be->copy(db_before, db);
  layernorm_backward(*be, din, dw, db, dout, in, w, mean, rstd);
  expect_added(din_before, din, din0, "din +=");
  expect_added(dw_before, dw, dw0, "dweight +=");
  expect_added(db_before, db, db0, "dbias +=");
}

}  // namespace
}  // namespace tandem::kernels
