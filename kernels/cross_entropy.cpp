// Tensor-level softmax + cross-entropy stages: shape checks, then CPU or CUDA.
#include "kernels/cross_entropy.h"

#include "kernels/dispatch.h"

namespace tandem::kernels {

namespace {
struct LogitDims {
  int64_t N, Vl;
};
LogitDims logit_dims(const Backend& be, const Tensor& logits) {
  check_device(be, logits, "xent logits");
  TANDEM_CHECK(logits.ndim() == 2, "xent logits must be [N, V], got {}", logits.describe());
  return {logits.dim(0), logits.dim(1)};
}
void check_rows(const Tensor& t, int64_t N, const char* what) {
  TANDEM_CHECK(t.defined() && t.numel() == N, "{} must hold {} rows, got {}", what, N, t.describe());
}
}  // namespace

void xent_row_max(Backend& be, Tensor& rowmax, const Tensor& logits, int64_t col_begin,
                  int64_t vocab) {
  auto [N, Vl] = logit_dims(be, logits);
  check_rows(rowmax, N, "xent rowmax");
  if (on_cpu(be)) cpu::xent_row_max(rowmax.f32(), logits.f32(), N, Vl, col_begin, vocab);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::xent_row_max(TANDEM_CUDA_CTX(be), rowmax.f32(), logits.f32(), N,
                                                Vl, col_begin, vocab));
}

void xent_row_sumexp(Backend& be, Tensor& sumexp, const Tensor& logits, const Tensor& rowmax,
                     int64_t col_begin, int64_t vocab) {
  auto [N, Vl] = logit_dims(be, logits);
  check_rows(sumexp, N, "xent sumexp");
  check_rows(rowmax, N, "xent rowmax");
  if (on_cpu(be))
    cpu::xent_row_sumexp(sumexp.f32(), logits.f32(), rowmax.f32(), N, Vl, col_begin, vocab);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::xent_row_sumexp(TANDEM_CUDA_CTX(be), sumexp.f32(), logits.f32(),
                                                   rowmax.f32(), N, Vl, col_begin, vocab));
}

void xent_target_logit(Backend& be, Tensor& tlogit, const Tensor& logits, const Tensor& targets,
                       int64_t col_begin) {
  auto [N, Vl] = logit_dims(be, logits);
  check_rows(tlogit, N, "xent target logit");
  check_rows(targets, N, "xent targets");
  if (on_cpu(be)) cpu::xent_target_logit(tlogit.f32(), logits.f32(), targets.i32(), N, Vl, col_begin);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::xent_target_logit(TANDEM_CUDA_CTX(be), tlogit.f32(), logits.f32(),
                                                     targets.i32(), N, Vl, col_begin));
}

void xent_losses(Backend& be, Tensor& losses, const Tensor& rowmax, const Tensor& sumexp,
                 const Tensor& tlogit, const Tensor& targets) {
  int64_t N = losses.numel();
  check_device(be, losses, "xent losses");
  check_rows(rowmax, N, "xent rowmax");
  check_rows(sumexp, N, "xent sumexp");
  check_rows(tlogit, N, "xent target logit");
  check_rows(targets, N, "xent targets");
  if (on_cpu(be))
    cpu::xent_losses(losses.f32(), rowmax.f32(), sumexp.f32(), tlogit.f32(), targets.i32(), N);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::xent_losses(TANDEM_CUDA_CTX(be), losses.f32(), rowmax.f32(),
                                               sumexp.f32(), tlogit.f32(), targets.i32(), N));
}

void xent_backward(Backend& be, Tensor& dlogits, const Tensor& logits, const Tensor& rowmax,
                   const Tensor& sumexp, const Tensor& targets, int64_t col_begin, int64_t vocab,
                   float scale) {
  auto [N, Vl] = logit_dims(be, logits);
  check_shape(dlogits, logits.shape(), "xent dlogits");
  check_rows(rowmax, N, "xent rowmax");
  check_rows(sumexp, N, "xent sumexp");
  check_rows(targets, N, "xent targets");
  if (on_cpu(be))
    cpu::xent_backward(dlogits.f32(), logits.f32(), rowmax.f32(), sumexp.f32(), targets.i32(), N, Vl,
                       col_begin, vocab, scale);
  else
    TANDEM_CUDA_DISPATCH(be, cuda::xent_backward(TANDEM_CUDA_CTX(be), dlogits.f32(), logits.f32(),
                                                 rowmax.f32(), sumexp.f32(), targets.i32(), N, Vl,
                                                 col_begin, vocab, scale));
}

void softmax_xent_forward(Backend& be, Tensor& losses, Tensor& rowmax, Tensor& sumexp,
                          const Tensor& logits, const Tensor& targets, int64_t vocab) {
  Tensor tlogit = be.empty({logits.dim(0)});
  xent_row_max(be, rowmax, logits, 0, vocab);
  xent_row_sumexp(be, sumexp, logits, rowmax, 0, vocab);
  xent_target_logit(be, tlogit, logits, targets, 0);
  xent_losses(be, losses, rowmax, sumexp, tlogit, targets);
}

}  // namespace tandem::kernels
