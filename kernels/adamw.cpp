// Tensor-level AdamW: size checks, then CPU or CUDA.
#include "kernels/adamw.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

void adamw_step(Backend& be, Tensor& param, const Tensor& grad, Tensor& m, Tensor& v,
                const AdamWHyper& h) {
  check_device(be, param, "adamw param");
  check_device(be, grad, "adamw grad");
  check_device(be, m, "adamw m");
  check_device(be, v, "adamw v");
  int64_t n = param.numel();
  TANDEM_CHECK(grad.numel() == n && m.numel() == n && v.numel() == n,
               "adamw sizes param {} grad {} m {} v {}", n, grad.numel(), m.numel(), v.numel());
  TANDEM_CHECK(h.step >= 1, "adamw step must be >= 1, got {}", h.step);
  if (on_cpu(be)) cpu::adamw_step(param.f32(), grad.f32(), m.f32(), v.f32(), n, h);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::adamw_step(TANDEM_CUDA_CTX(be), param.f32(), grad.f32(), m.f32(),
                                              v.f32(), n, h));
}

}  // namespace tandem::kernels
