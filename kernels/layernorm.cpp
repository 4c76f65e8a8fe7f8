// Tensor-level LayerNorm: shape checks, then the CPU or CUDA implementation (fp32 or bf16 out).
#include "kernels/layernorm.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

void layernorm_forward(Backend& be, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& in,
                       const Tensor& weight, const Tensor& bias, float eps) {
  int64_t C = in.dim(-1), N = in.numel() / C;
  check_device(be, in, "layernorm in");
  check_shape(out, in.shape(), "layernorm out");
  check_shape(weight, {C}, "layernorm weight");
  check_shape(bias, {C}, "layernorm bias");
  TANDEM_CHECK(mean.numel() == N && rstd.numel() == N, "layernorm stats {} {} for {} rows",
               mean.describe(), rstd.describe(), N);
  if (out.dtype() == DType::BF16) {
    bf16* o = out.data<bf16>();
    if (on_cpu(be))
      cpu::layernorm_forward_bf16(o, mean.f32(), rstd.f32(), in.f32(), weight.f32(), bias.f32(), N,
                                  C, eps);
    else
      TANDEM_CUDA_DISPATCH(be, cuda::layernorm_forward_bf16(TANDEM_CUDA_CTX(be), o, mean.f32(),
                                                            rstd.f32(), in.f32(), weight.f32(),
                                                            bias.f32(), N, C, eps));
    return;
  }
  if (on_cpu(be))
    cpu::layernorm_forward(out.f32(), mean.f32(), rstd.f32(), in.f32(), weight.f32(), bias.f32(), N,
                           C, eps);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::layernorm_forward(TANDEM_CUDA_CTX(be), out.f32(), mean.f32(),
                                                     rstd.f32(), in.f32(), weight.f32(), bias.f32(),
                                                     N, C, eps));
}

void layernorm_backward(Backend& be, Tensor& din, Tensor& dweight, Tensor& dbias,
                        const Tensor& dout, const Tensor& in, const Tensor& weight,
                        const Tensor& mean, const Tensor& rstd) {
  int64_t C = in.dim(-1), N = in.numel() / C;
  check_device(be, in, "layernorm_backward in");
  check_shape(din, in.shape(), "layernorm_backward din");
  check_shape(dout, in.shape(), "layernorm_backward dout");
  check_shape(dweight, {C}, "layernorm_backward dweight");
  check_shape(dbias, {C}, "layernorm_backward dbias");
  TANDEM_CHECK(mean.numel() == N && rstd.numel() == N, "layernorm stats {} {} for {} rows",
               mean.describe(), rstd.describe(), N);
  if (on_cpu(be))
    cpu::layernorm_backward(din.f32(), dweight.f32(), dbias.f32(), dout.f32(), in.f32(),
                            weight.f32(), mean.f32(), rstd.f32(), N, C);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::layernorm_backward(TANDEM_CUDA_CTX(be), din.f32(), dweight.f32(),
                                                      dbias.f32(), dout.f32(), in.f32(),
                                                      weight.f32(), mean.f32(), rstd.f32(), N, C));
}

}  // namespace tandem::kernels
