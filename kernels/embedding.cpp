// Tensor-level embedding: shape checks, then the CPU or CUDA implementation.
#include "kernels/embedding.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

void embedding_forward(Backend& be, Tensor& out, const Tensor& ids, const Tensor& table,
                       int64_t row_offset, bool accumulate) {
  check_device(be, out, "embedding out");
  check_device(be, ids, "embedding ids");
  check_device(be, table, "embedding table");
  int64_t N = ids.numel(), R = table.dim(0), C = table.dim(1);
  check_shape(out, {N, C}, "embedding out");
  if (on_cpu(be))
    cpu::embedding_forward(out.f32(), ids.i32(), table.f32(), N, C, R, row_offset, accumulate);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::embedding_forward(TANDEM_CUDA_CTX(be), out.f32(), ids.i32(),
                                                     table.f32(), N, C, R, row_offset, accumulate));
}

void embedding_backward(Backend& be, Tensor& dtable, const Tensor& dout, const Tensor& ids,
                        int64_t row_offset) {
  check_device(be, dtable, "embedding_backward dtable");
  check_device(be, dout, "embedding_backward dout");
  check_device(be, ids, "embedding_backward ids");
  int64_t N = ids.numel(), R = dtable.dim(0), C = dtable.dim(1);
  check_shape(dout, {N, C}, "embedding_backward dout");
  if (on_cpu(be))
    cpu::embedding_backward(dtable.f32(), dout.f32(), ids.i32(), N, C, R, row_offset);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::embedding_backward(TANDEM_CUDA_CTX(be), dtable.f32(), dout.f32(),
                                                      ids.i32(), N, C, R, row_offset));
}

}  // namespace tandem::kernels
