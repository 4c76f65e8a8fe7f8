// Device helpers for bf16 storage (runtime/core/bf16.h): pointer reinterpretation between the
// host type tandem::bf16 and CUDA's __nv_bfloat16 (same 2-byte layout), and loads/stores that
// let one kernel template read or write either fp32 or bf16 with fp32 arithmetic.
//
// Contract: include kernels/cuda/common.cuh first. store_as rounds to nearest even
// (__float2bfloat16_rn, the same rounding as the CPU's f32_to_bf16); load_f32 is exact.
#pragma once

#include <cuda_bf16.h>

#include "runtime/core/bf16.h"

namespace tandem::kernels::cuda_detail {

static_assert(sizeof(__nv_bfloat16) == sizeof(bf16), "bf16 layouts differ");

inline __nv_bfloat16* dev(bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
inline const __nv_bfloat16* dev(const bf16* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }

__device__ __forceinline__ float load_f32(const float* p) { return *p; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p) { return __bfloat162float(*p); }

__device__ __forceinline__ void store_as(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_as(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

}  // namespace tandem::kernels::cuda_detail
