// Tensor-level fp32 <-> bf16 conversion: size and dtype checks, then the CPU or CUDA version.
#include "kernels/cast.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

void cast(Backend& be, Tensor& dst, const Tensor& src) {
  check_device(be, dst, "cast dst");
  check_device(be, src, "cast src");
  TANDEM_CHECK(dst.numel() == src.numel(), "cast: dst {} and src {} differ in size", dst.describe(),
               src.describe());
  const DType d = dst.dtype(), s = src.dtype();
  if (d == s) {
    be.copy(dst, src);
    return;
  }
  TANDEM_CHECK(!tensors_overlap(dst, src), "cast: dst {} overlaps src {}", dst.describe(),
               src.describe());
  const int64_t n = src.numel();
  if (d == DType::BF16 && s == DType::F32) {
    if (on_cpu(be)) cpu::f32_to_bf16(dst.data<bf16>(), src.f32(), n);
    else TANDEM_CUDA_DISPATCH(be, cuda::f32_to_bf16(TANDEM_CUDA_CTX(be), dst.data<bf16>(), src.f32(), n));
  } else if (d == DType::F32 && s == DType::BF16) {
    if (on_cpu(be)) cpu::bf16_to_f32(dst.f32(), src.data<bf16>(), n);
    else TANDEM_CUDA_DISPATCH(be, cuda::bf16_to_f32(TANDEM_CUDA_CTX(be), dst.f32(), src.data<bf16>(), n));
  } else {
    throw Error(fmt::format("cast: no conversion {} <- {} (f32 <-> bf16 only)", dst.describe(),
                            src.describe()));
  }
}

namespace {

Tensor cast_to(Backend& be, const Tensor& src, DType dtype) {
  if (src.dtype() == dtype) return src;
  Tensor out = be.empty(src.shape(), dtype);
  cast(be, out, src);
  return out;
}

}  // namespace

Tensor to_bf16(Backend& be, const Tensor& src) { return cast_to(be, src, DType::BF16); }
Tensor to_f32(Backend& be, const Tensor& src) { return cast_to(be, src, DType::F32); }

}  // namespace tandem::kernels
