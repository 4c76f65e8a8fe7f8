// Kernel family: AdamW update (decoupled weight decay), on a flat range of parameters.
//
// Contract: param, grad, m, v are flat fp32 of equal size. With g = grad * grad_scale
// (grad_scale carries the clipping factor):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   param -= lr * ( (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps) + weight_decay * param )
// (PyTorch's torch.optim.AdamW ordering: decay uses the pre-update parameter.) step >= 1.
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

struct AdamWHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  int64_t step = 1;
  float grad_scale = 1.0f;
};

void adamw_step(Backend& be, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                const AdamWHyper& h);

namespace cpu {
void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWHyper& h);
}  // namespace cpu

namespace cuda {
void adamw_step(CudaContext& ctx, float* param, const float* grad, float* m, float* v, int64_t n,
                const AdamWHyper& h);
}  // namespace cuda

}  // namespace tandem::kernels
