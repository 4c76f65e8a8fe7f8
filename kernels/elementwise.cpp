// Tensor-level elementwise ops: size checks, then CPU or CUDA.
#include "kernels/elementwise.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

void add(Backend& be, Tensor& out, const Tensor& a, const Tensor& b) {
  check_device(be, out, "add out");
  check_device(be, a, "add a");
  check_device(be, b, "add b");
  TANDEM_CHECK(a.numel() == b.numel() && out.numel() == a.numel(), "add sizes out {} a {} b {}",
               out.numel(), a.numel(), b.numel());
  if (on_cpu(be)) cpu::add(out.f32(), a.f32(), b.f32(), a.numel());
  else TANDEM_CUDA_DISPATCH(be, cuda::add(TANDEM_CUDA_CTX(be), out.f32(), a.f32(), b.f32(), a.numel()));
}

void add_inplace(Backend& be, Tensor& a, const Tensor& b) { add(be, a, a, b); }

void scale_inplace(Backend& be, Tensor& x, float s) {
  check_device(be, x, "scale x");
  if (on_cpu(be)) cpu::scale(x.f32(), s, x.numel());
  else TANDEM_CUDA_DISPATCH(be, cuda::scale(TANDEM_CUDA_CTX(be), x.f32(), s, x.numel()));
}

double sum_squares(Backend& be, const Tensor& x) {
  check_device(be, x, "sum_squares x");
  if (on_cpu(be)) return cpu::sum_squares(x.f32(), x.numel());
#ifdef TANDEM_HAVE_CUDA
  return cuda::sum_squares(TANDEM_CUDA_CTX(be), x.f32(), x.numel());
#else
  no_cuda(__func__);
#endif
}

}  // namespace tandem::kernels
