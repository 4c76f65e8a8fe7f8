// Kernel family: causal multi-head self-attention core (softmax(QK^T/sqrt(d)) V), fwd/bwd.
//
// Contract (shapes; H = heads held here, D = head dim, so a tensor-parallel rank passes its
// local heads):
//   qkv  [B, T, 3*H*D]: per token, all H query heads, then all key heads, then all value heads
//                       (the output of the fused qkv linear layer), head h at columns h*D..
//   out  [B, T, H*D]   attention output, heads concatenated
//   lse  [B, H, T]     log-sum-exp of each scaled, masked score row (saved by forward)
//   probs[B, H, T, T]  optional saved probabilities (row i holds columns 0..i, rest 0); when
//                      null, backward recomputes them from qkv and lse (selective recompute)
//   backward: dqkv = d(out)/d(qkv) . dout  (overwrites dqkv)
// attention_backward_reads_probs(device): whether that device's backward uses saved probs when
// given (CPU: yes, it skips the recompute; CUDA: no, it always recomputes P tile by tile, which
// costs less than reading T x T values). Callers save the probabilities only where it is true.
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

bool attention_backward_reads_probs(DeviceKind device);
void attention_forward(Backend& be, Tensor& out, Tensor& lse, Tensor* probs, const Tensor& qkv,
                       int64_t heads);
void attention_backward(Backend& be, Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                        const Tensor& out, const Tensor& lse, const Tensor* probs, int64_t heads);

namespace cpu {
void attention_forward(float* out, float* lse, float* probs, const float* qkv, int64_t B, int64_t T,
                       int64_t H, int64_t D);
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, const float* probs, int64_t B, int64_t T, int64_t H,
                        int64_t D);
}  // namespace cpu

namespace cuda {
void attention_forward(CudaContext& ctx, float* out, float* lse, float* probs, const float* qkv,
                       int64_t B, int64_t T, int64_t H, int64_t D);
void attention_backward(CudaContext& ctx, float* dqkv, const float* dout, const float* qkv,
                        const float* out, const float* lse, const float* probs, int64_t B,
                        int64_t T, int64_t H, int64_t D);
}  // namespace cuda

}  // namespace tandem::kernels
