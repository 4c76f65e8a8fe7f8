// Kernel family: LayerNorm over the last dimension, forward and backward.
//
// Contract: in/out/dout/din are [N, C]; weight, bias, dweight, dbias are [C]; mean and rstd
// are [N] (saved by forward for backward). Backward ACCUMULATES: din += ..., dweight += ...,
// dbias += ... (the residual stream and gradient accumulation rely on this).
// Mixed precision: forward may write a BF16 out (the input of a bf16 GEMM); mean, rstd and all
// arithmetic stay fp32 and out is the fp32 result rounded once (CPU: exactly that).
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void layernorm_forward(Backend& be, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& in,
                       const Tensor& weight, const Tensor& bias, float eps = 1e-5f);
void layernorm_backward(Backend& be, Tensor& din, Tensor& dweight, Tensor& dbias,
                        const Tensor& dout, const Tensor& in, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd);

namespace cpu {
void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* weight,
                       const float* bias, int64_t N, int64_t C, float eps);
void layernorm_forward_bf16(bf16* out, float* mean, float* rstd, const float* in,
                            const float* weight, const float* bias, int64_t N, int64_t C, float eps);
void layernorm_backward(float* din, float* dweight, float* dbias, const float* dout,
                        const float* in, const float* weight, const float* mean,
                        const float* rstd, int64_t N, int64_t C);
}  // namespace cpu

namespace cuda {
void layernorm_forward(CudaContext& ctx, float* out, float* mean, float* rstd, const float* in,
                       const float* weight, const float* bias, int64_t N, int64_t C, float eps);
void layernorm_forward_bf16(CudaContext& ctx, bf16* out, float* mean, float* rstd, const float* in,
                            const float* weight, const float* bias, int64_t N, int64_t C, float eps);
void layernorm_backward(CudaContext& ctx, float* din, float* dweight, float* dbias,
                        const float* dout, const float* in, const float* weight,
                        const float* mean, const float* rstd, int64_t N, int64_t C);
}  // namespace cuda

}  // namespace tandem::kernels
