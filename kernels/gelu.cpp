// Tensor-level GELU: shape checks, then the CPU or CUDA implementation.
#include "kernels/gelu.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

void gelu_forward(Backend& be, Tensor& out, const Tensor& in) {
  check_device(be, in, "gelu in");
  check_device(be, out, "gelu out");
  TANDEM_CHECK_EQ(out.numel(), in.numel());
  if (in.dtype() == DType::BF16 || out.dtype() == DType::BF16) {
    TANDEM_CHECK(in.dtype() == out.dtype(), "gelu_forward: in {} and out {} differ in dtype",
                 in.describe(), out.describe());
    bf16* o = out.data<bf16>();
    const bf16* i = in.data<bf16>();
    if (on_cpu(be)) cpu::gelu_forward_bf16(o, i, in.numel());
    else TANDEM_CUDA_DISPATCH(be, cuda::gelu_forward_bf16(TANDEM_CUDA_CTX(be), o, i, in.numel()));
    return;
  }
  if (on_cpu(be)) cpu::gelu_forward(out.f32(), in.f32(), in.numel());
  else TANDEM_CUDA_DISPATCH(be, cuda::gelu_forward(TANDEM_CUDA_CTX(be), out.f32(), in.f32(), in.numel()));
}

void gelu_backward(Backend& be, Tensor& din, const Tensor& in, const Tensor& dout) {
  check_device(be, in, "gelu_backward in");
  check_device(be, din, "gelu_backward din");
  check_device(be, dout, "gelu_backward dout");
  TANDEM_CHECK(din.numel() == in.numel() && dout.numel() == in.numel(),
               "gelu_backward sizes din {} in {} dout {}", din.numel(), in.numel(), dout.numel());
  if (on_cpu(be)) cpu::gelu_backward(din.f32(), in.f32(), dout.f32(), in.numel());
  else
    TANDEM_CUDA_DISPATCH(be, cuda::gelu_backward(TANDEM_CUDA_CTX(be), din.f32(), in.f32(), dout.f32(),
                                                 in.numel()));
}

}  // namespace tandem::kernels
