// CPU reference for kernels/cast.h: fp32 <-> bf16 element by element (runtime/core/bf16.h's
// round-to-nearest-even), split over OpenMP threads for large tensors.
#include "kernels/cast.h"

namespace tandem::kernels::cpu {

void f32_to_bf16(bf16* dst, const float* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = tandem::f32_to_bf16(src[i]);
}

void bf16_to_f32(float* dst, const bf16* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
  for (int64_t i = 0; i < n; ++i) dst[i] = tandem::bf16_to_f32(src[i]);
}

}  // namespace tandem::kernels::cpu
