// Kernel family: residual add and other elementwise arithmetic on flat fp32 tensors.
//
// Contract: sizes must match; out may alias an input.
//   add(out, a, b):       out = a + b         (residual connection)
//   add_inplace(a, b):    a += b               (gradient of a residual branch)
//   scale_inplace(x, s):  x *= s              (gradient clipping, loss scaling)
//   sum_squares(x):       sum of x^2 in double precision, returned to the host
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void add(Backend& be, Tensor& out, const Tensor& a, const Tensor& b);
void add_inplace(Backend& be, Tensor& a, const Tensor& b);
void scale_inplace(Backend& be, Tensor& x, float s);
double sum_squares(Backend& be, const Tensor& x);

namespace cpu {
void add(float* out, const float* a, const float* b, int64_t n);
void scale(float* x, float s, int64_t n);
double sum_squares(const float* x, int64_t n);
}  // namespace cpu

namespace cuda {
void add(CudaContext& ctx, float* out, const float* a, const float* b, int64_t n);
void scale(CudaContext& ctx, float* x, float s, int64_t n);
double sum_squares(CudaContext& ctx, const float* x, int64_t n);  // synchronises the stream
}  // namespace cuda

}  // namespace tandem::kernels
