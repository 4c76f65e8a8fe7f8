// CUDA AdamW update, elementwise over a flat parameter range.
//
// Contract (kernels/adamw.h): g = grad * grad_scale; m = b1 m + (1-b1) g;
// v = b2 v + (1-b2) g^2; param -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * param), with the
// bias corrections 1 - b^step computed once on the host (in double) and decay applied to the
// pre-update parameter (PyTorch ordering).
#include "kernels/cuda/common.cuh"
#include "kernels/adamw.h"

#include <cmath>

namespace tandem::kernels::cuda {

using namespace cuda_detail;

namespace {

struct AdamWArgs {
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  float inv_bc1, inv_bc2;  // 1 / (1 - beta^step)
};

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, int64_t n, AdamWArgs a) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = grad[i] * a.grad_scale;
    const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
    const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi * a.inv_bc1;
    const float vhat = vi * a.inv_bc2;
    const float p = param[i];
    param[i] = p - a.lr * (mhat / (sqrtf(vhat) + a.eps) + a.weight_decay * p);
  }
}

}  // namespace

void adamw_step(CudaContext& ctx, float* param, const float* grad, float* m, float* v, int64_t n,
                const AdamWHyper& h) {
  TANDEM_CHECK(h.step >= 1, "adamw step must be >= 1, got {}", h.step);
  if (n <= 0) return;
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  TANDEM_CHECK(bc1 > 0.0 && bc2 > 0.0, "adamw bias corrections {} {} (beta1 {} beta2 {} step {})",
               bc1, bc2, h.beta1, h.beta2, h.step);
  AdamWArgs a{h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.grad_scale,
              static_cast<float>(1.0 / bc1), static_cast<float>(1.0 / bc2)};
  adamw_kernel<<<grid_for(ctx, n, 256), 256, 0, ctx.stream>>>(param, grad, m, v, n, a);
  TANDEM_LAUNCH_CHECK("adamw_kernel");
}

}  // namespace tandem::kernels::cuda
