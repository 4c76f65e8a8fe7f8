// Test support for the CUDA parity tests: a CPU and a CUDA backend side by side, transfers
// between them, and an element-wise comparison of a CPU reference with a CUDA result.
// SetUp() skips the test visibly (GTEST_SKIP "no CUDA device") where no GPU is present.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>

#include "runtime/core/backend.h"

namespace tandem::kernels {

class CudaParityFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    cpu_ = make_cpu_backend(0);
    gpu_ = make_backend(BackendOptions{.device = "cuda"});
    ASSERT_EQ(gpu_->kind(), DeviceKind::CUDA);
  }

  Tensor to_gpu(const Tensor& h) {
    Tensor d = gpu_->empty(h.shape(), h.dtype());
    gpu_->copy(d, h);
    return d;
  }
  Tensor to_cpu(const Tensor& d) {
    Tensor h = cpu_->empty(d.shape(), d.dtype());
    gpu_->copy(h, d);
    return h;
  }

  // |cuda - cpu| <= atol + rtol * |cpu| for every element (bit-equal also passes, which
  // covers matching infinities); reports the count of failures and the worst one.
  void expect_close(const Tensor& ref, const Tensor& dev, double atol, double rtol,
                    const std::string& what) {
    ASSERT_EQ(ref.numel(), dev.numel()) << what;
    Tensor got = to_cpu(dev);
    int64_t bad = 0, worst_i = -1;
    double worst = -1.0;  // worst failing error if any element fails, else worst error
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const float a = ref.f32()[i], b = got.f32()[i];
      if (a == b) continue;
      double err = std::fabs(static_cast<double>(a) - b);
      if (std::isnan(err)) err = INFINITY;
      const bool ok = err <= atol + rtol * std::fabs(static_cast<double>(a));
      if (!ok && bad++ == 0) worst = -1.0;  // first failure: report failures only from now on
      if ((bad == 0 || !ok) && err > worst) worst = err, worst_i = i;
    }
    EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.numel()
                      << " elements outside atol " << atol << " + rtol " << rtol << "; worst at "
                      << worst_i << ": cpu " << (worst_i >= 0 ? ref.f32()[worst_i] : 0.f)
                      << " cuda " << (worst_i >= 0 ? got.f32()[worst_i] : 0.f) << " (err "
                      << worst << ")";
  }

  std::unique_ptr<Backend> cpu_, gpu_;
};

}  // namespace tandem::kernels
