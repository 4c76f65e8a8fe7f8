// Kernel family: embedding lookup (token and position tables), forward and backward.
//
// Contract: the table holds rows [row_offset, row_offset + R) of a logical table (a
// vocab-parallel shard, or the whole table with row_offset 0).
//   forward:  out[n] = table[ids[n] - row_offset] when that row is held here, else 0;
//             with accumulate, out[n] += that row (rows not held add nothing).
//   backward: dtable[ids[n] - row_offset] += dout[n] for held rows.
// ids are int32 [N]; out/dout are [N, C]; table/dtable are [R, C].
#pragma once

#include <cstdint>

#include "runtime/core/backend.h"

namespace tandem::kernels {

void embedding_forward(Backend& be, Tensor& out, const Tensor& ids, const Tensor& table,
                       int64_t row_offset, bool accumulate);
void embedding_backward(Backend& be, Tensor& dtable, const Tensor& dout, const Tensor& ids,
                        int64_t row_offset);

namespace cpu {
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C,
                       int64_t R, int64_t row_offset, bool accumulate);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t C,
                        int64_t R, int64_t row_offset);
}  // namespace cpu

namespace cuda {
void embedding_forward(CudaContext& ctx, float* out, const int32_t* ids, const float* table,
                       int64_t N, int64_t C, int64_t R, int64_t row_offset, bool accumulate);
void embedding_backward(CudaContext& ctx, float* dtable, const float* dout, const int32_t* ids,
                        int64_t N, int64_t C, int64_t R, int64_t row_offset);
}  // namespace cuda

}  // namespace tandem::kernels
