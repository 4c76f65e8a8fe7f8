// Kernel family: softmax + cross-entropy over (possibly vocab-sharded) logits, fwd/bwd.
//
// Contract: logits [N, Vl] hold global columns [col_begin, col_begin + Vl) of a padded
// vocabulary; only global columns < vocab are real (padding columns never enter the softmax
// and get zero gradient). targets int32 [N] hold global ids; a negative target is ignored
// (no loss, no gradient). The stages let vocab-parallel code reduce across ranks in between:
//   row_max     -> all-reduce MAX -> row_sumexp(using global max) -> all-reduce SUM
//   target_logit (0 where the target is not held here)             -> all-reduce SUM
//   losses = log(sumexp) + max - target_logit
//   backward: dlogits = scale * (softmax - onehot(target)); dlogits may alias logits.
// softmax_xent_forward is the single-shard composition of the forward stages.
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void xent_row_max(Backend& be, Tensor& rowmax, const Tensor& logits, int64_t col_begin,
                  int64_t vocab);
void xent_row_sumexp(Backend& be, Tensor& sumexp, const Tensor& logits, const Tensor& rowmax,
                     int64_t col_begin, int64_t vocab);
void xent_target_logit(Backend& be, Tensor& tlogit, const Tensor& logits, const Tensor& targets,
                       int64_t col_begin);
void xent_losses(Backend& be, Tensor& losses, const Tensor& rowmax, const Tensor& sumexp,
                 const Tensor& tlogit, const Tensor& targets);
void xent_backward(Backend& be, Tensor& dlogits, const Tensor& logits, const Tensor& rowmax,
                   const Tensor& sumexp, const Tensor& targets, int64_t col_begin, int64_t vocab,
                   float scale);
// Single shard: fills rowmax, sumexp and per-row losses [N].
void softmax_xent_forward(Backend& be, Tensor& losses, Tensor& rowmax, Tensor& sumexp,
                          const Tensor& logits, const Tensor& targets, int64_t vocab);

namespace cpu {
void xent_row_max(float* rowmax, const float* logits, int64_t N, int64_t Vl, int64_t col_begin,
                  int64_t vocab);
void xent_row_sumexp(float* sumexp, const float* logits, const float* rowmax, int64_t N, int64_t Vl,
                     int64_t col_begin, int64_t vocab);
void xent_target_logit(float* tlogit, const float* logits, const int32_t* targets, int64_t N,
                       int64_t Vl, int64_t col_begin);
void xent_losses(float* losses, const float* rowmax, const float* sumexp, const float* tlogit,
                 const int32_t* targets, int64_t N);
void xent_backward(float* dlogits, const float* logits, const float* rowmax, const float* sumexp,
                   const int32_t* targets, int64_t N, int64_t Vl, int64_t col_begin, int64_t vocab,
                   float scale);
}  // namespace cpu

namespace cuda {
void xent_row_max(CudaContext& ctx, float* rowmax, const float* logits, int64_t N, int64_t Vl,
                  int64_t col_begin, int64_t vocab);
void xent_row_sumexp(CudaContext& ctx, float* sumexp, const float* logits, const float* rowmax,
                     int64_t N, int64_t Vl, int64_t col_begin, int64_t vocab);
void xent_target_logit(CudaContext& ctx, float* tlogit, const float* logits, const int32_t* targets,
                       int64_t N, int64_t Vl, int64_t col_begin);
void xent_losses(CudaContext& ctx, float* losses, const float* rowmax, const float* sumexp,
                 const float* tlogit, const int32_t* targets, int64_t N);
void xent_backward(CudaContext& ctx, float* dlogits, const float* logits, const float* rowmax,
                   const float* sumexp, const int32_t* targets, int64_t N, int64_t Vl,
                   int64_t col_begin, int64_t vocab, float scale);
}  // namespace cuda

}  // namespace tandem::kernels
