// Kernel family: GELU, tanh approximation (as GPT-2), forward and backward.
//
// Contract: gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
//   forward:  out = gelu(in)                 (out may alias in)
//   backward: din = dout * gelu'(in)         (overwrites din; din may alias dout)
// Mixed precision: forward also takes BF16 in and out (fp32 arithmetic, one rounding of the
// result; CPU: exactly the fp32 forward of the widened input, rounded). backward is fp32 only.
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void gelu_forward(Backend& be, Tensor& out, const Tensor& in);
void gelu_backward(Backend& be, Tensor& din, const Tensor& in, const Tensor& dout);

namespace cpu {
void gelu_forward(float* out, const float* in, int64_t n);
void gelu_forward_bf16(bf16* out, const bf16* in, int64_t n);
void gelu_backward(float* din, const float* in, const float* dout, int64_t n);
}  // namespace cpu

namespace cuda {
void gelu_forward(CudaContext& ctx, float* out, const float* in, int64_t n);
void gelu_forward_bf16(CudaContext& ctx, bf16* out, const bf16* in, int64_t n);
void gelu_backward(CudaContext& ctx, float* din, const float* in, const float* dout, int64_t n);
}  // namespace cuda

}  // namespace tandem::kernels
