// Tensor-level attention: shape checks, then the CPU or CUDA implementation.
#include "kernels/attention.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

namespace {
struct Dims {
  int64_t B, T, H, D;
};
Dims attention_dims(const Tensor& qkv, int64_t heads) {
  TANDEM_CHECK(qkv.ndim() == 3, "attention qkv must be [B, T, 3*H*D], got {}", qkv.describe());
  TANDEM_CHECK(heads > 0 && qkv.dim(2) % (3 * heads) == 0,
               "attention qkv width {} is not 3 * heads({}) * head_dim", qkv.dim(2), heads);
  return {qkv.dim(0), qkv.dim(1), heads, qkv.dim(2) / (3 * heads)};
}
}  // namespace

bool attention_backward_reads_probs(DeviceKind device) { return device == DeviceKind::CPU; }

void attention_forward(Backend& be, Tensor& out, Tensor& lse, Tensor* probs, const Tensor& qkv,
                       int64_t heads) {
  check_device(be, qkv, "attention qkv");
  auto [B, T, H, D] = attention_dims(qkv, heads);
  check_shape(out, {B, T, H * D}, "attention out");
  check_shape(lse, {B, H, T}, "attention lse");
  if (probs) check_shape(*probs, {B, H, T, T}, "attention probs");
  float* p = probs ? probs->f32() : nullptr;
  if (on_cpu(be)) cpu::attention_forward(out.f32(), lse.f32(), p, qkv.f32(), B, T, H, D);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::attention_forward(TANDEM_CUDA_CTX(be), out.f32(), lse.f32(), p,
                                                     qkv.f32(), B, T, H, D));
}

void attention_backward(Backend& be, Tensor& dqkv, const Tensor& dout, const Tensor& qkv,
                        const Tensor& out, const Tensor& lse, const Tensor* probs, int64_t heads) {
  check_device(be, qkv, "attention_backward qkv");
  auto [B, T, H, D] = attention_dims(qkv, heads);
  check_shape(dqkv, qkv.shape(), "attention_backward dqkv");
  check_shape(dout, {B, T, H * D}, "attention_backward dout");
  check_shape(out, {B, T, H * D}, "attention_backward out");
  check_shape(lse, {B, H, T}, "attention_backward lse");
  if (probs) check_shape(*probs, {B, H, T, T}, "attention_backward probs");
  const float* p = probs ? probs->f32() : nullptr;
  if (on_cpu(be))
    cpu::attention_backward(dqkv.f32(), dout.f32(), qkv.f32(), out.f32(), lse.f32(), p, B, T, H, D);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::attention_backward(TANDEM_CUDA_CTX(be), dqkv.f32(), dout.f32(),
                                                      qkv.f32(), out.f32(), lse.f32(), p, B, T, H,
                                                      D));
}

}  // namespace tandem::kernels
