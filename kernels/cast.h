// Kernel family: conversion between fp32 and bf16 storage (mixed precision, train.precision).
//
// Contract:
//   cast(dst, src):  f32 -> bf16 rounds to nearest, ties to even (runtime/core/bf16.h: NaN stays
//                    NaN, overflow becomes inf); bf16 -> f32 is exact; f32 -> f32 and
//                    bf16 -> bf16 copy. dst and src hold the same number of elements, are dense
//                    and must not overlap (unless they are the same tensor of the same dtype).
//   to_bf16(src):    a fresh bf16 tensor of src's shape holding cast(src) (src itself when it
//                    already is bf16). to_f32 likewise.
// CPU and CUDA round identically (both RNE), so the parity test compares bit for bit.
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void cast(Backend& be, Tensor& dst, const Tensor& src);
Tensor to_bf16(Backend& be, const Tensor& src);
Tensor to_f32(Backend& be, const Tensor& src);

namespace cpu {
void f32_to_bf16(bf16* dst, const float* src, int64_t n);
void bf16_to_f32(float* dst, const bf16* src, int64_t n);
}  // namespace cpu

namespace cuda {
void f32_to_bf16(CudaContext& ctx, bf16* dst, const float* src, int64_t n);
void bf16_to_f32(CudaContext& ctx, float* dst, const bf16* src, int64_t n);
}  // namespace cuda

}  // namespace tandem::kernels
