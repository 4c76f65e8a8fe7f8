// TransformerBlock: one pre-LayerNorm GPT-2 block with explicit forward and backward.
//
//   x1 = x  + proj(attn(ln1(x)))        attention split by heads over the tp group
//   x2 = x1 + fc_proj(gelu(fc(ln2(x1))))  MLP split by columns (fc), then rows (fc_proj)
//
// Contract: forward() fills a BlockSaved according to the recompute mode and returns x2;
// backward() takes d(x2) and returns d(x), ACCUMULATING parameter gradients (+=).
//   none:      saves every intermediate the backend's backward reads: the attention
//              probabilities [b, H, T, T] only where the attention backward reads them
//              (kernels::attention_backward_reads_probs: the CPU, not CUDA, whose backward
//              rebuilds them from q, k and the log-sum-exp in any case)
//   selective: drops the probabilities (rebuilt from q, k and the saved log-sum-exp) and the
//              GELU output (recomputed from its saved input); everything else is kept
//   full:      keeps only the block input; backward re-runs the forward first (saving, for
//              that backward, what `none` saves)
// Tensor parallelism follows Megatron: column-parallel qkv/fc (identity forward, all-reduce
// of the input gradient), row-parallel proj/fc_proj (all-reduce of the output, bias added
// after). With a tp group of one these reductions are no-ops.
// Precision::BF16 (mixed precision, docs/architecture.md): the four linear layers multiply bf16
// operands with fp32 accumulation, reading the store's bf16 weight copy. Stored in bf16 (GEMM
// inputs only): ln1, ln2, fc (the GELU input) and gelu. Kept fp32: the residual stream x, x1,
// x2 and every gradient flowing along it (tp/pp communication unchanged), LayerNorm statistics,
// qkv, att, lse and probs (the attention kernels are fp32), and every parameter gradient.
// The MLP runs fc + bias + GELU as one fused GEMM epilogue and fc_proj's input gradient with
// the GELU derivative fused (kernels/matmul.h). The fp32 path runs exactly the ops it always ran.
// Inference (forward_cached) is always fp32, from the fp32 master weights.
#pragma once

#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/parallel_options.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model_options.h"
#include "runtime/model/param_store.h"

namespace tandem {

struct BlockSaved {
  Tensor x;                          // block input (kept unless offloaded to x_host)
  Tensor x_host;                     // full recompute + offload on a GPU: the input in host memory
  Tensor ln1, mean1, rstd1, qkv, att, lse, probs, x1, ln2, mean2, rstd2, fc, gelu;
  bool complete = false;             // intermediates present (false under full recompute)
};

class TransformerBlock {
 public:
  // Registers this block's parameters (names "h.<layer>.*") in `store`.
  TransformerBlock(ParamStore& store, const ModelOptions& opt, int layer, Communicator& tp,
                   Precision precision = Precision::F32);
  void bind();  // after store.finalize(): resolve parameter tensors
  // The parameters of block `layer` as tp rank `rank` of `parts` holds them (a pure function).
  static std::vector<ParamSpec> param_specs(const ModelOptions& opt, int layer, int parts, int rank);
  // Full recompute only: keep the saved block input in (pinned) host memory instead of device
  // memory. A no-op on the CPU backend, where activations already live in host memory.
  void set_offload_input(bool on) { offload_input_ = on; }

  // x: [N, C] with N = b * T. Returns x2 [N, C].
  Tensor forward(const Tensor& x, int64_t b, int64_t T, Recompute mode, BlockSaved* saved);
  // Inference: x [N, C] holds the batch's new tokens; their keys and values are appended to
  // layer `cache_layer` of `cache` and attention reads the whole cached context. Returns x2.
  Tensor forward_cached(const Tensor& x, const InferBatchDevice& batch, KvCache& cache,
                        int cache_layer);
  // dout: d(x2) [N, C]; its storage is consumed (overwritten) and returned as d(x) [N, C].
  // Releases `saved`.
  Tensor backward(const Tensor& dout, int64_t b, int64_t T, BlockSaved& saved);

  // Activation bytes kept per token by forward() for a recompute mode, precision and device
  // (for memory reports).
  static int64_t saved_bytes_per_token(const ModelOptions& opt, int tp, int64_t T, Recompute mode,
                                       Precision precision, DeviceKind device);

 private:
  struct W {
    Param *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc_w, *fc_b,
        *fcp_w, *fcp_b;
  };
  // out, mean, rstd = LayerNorm(x) (fresh tensors).
  void layernorm(const Tensor& x, const Param& w, const Param& b, Tensor& out, Tensor& mean,
                 Tensor& rstd);
  // Row-parallel linear with its residual: out = all_reduce(in @ w^T) + b + residual (w: the
  // weight tensor the GEMM reads; b: fp32, added after the reduction).
  void row_parallel_residual(Tensor& out, const Tensor& in, const Tensor& w, const Param& b,
                             const Tensor& residual);
  void forward_into(const Tensor& x, int64_t b, int64_t T, bool keep_probs, bool keep_gelu,
                    BlockSaved& s, Tensor& x2);
  // The tensor a GEMM reads for parameter p: its bf16 copy under mixed precision, else p.value.
  const Tensor& gemm_weight(const Param& p) const { return bf16_ ? p.value_bf16 : p.value; }

  ParamStore& store_;
  Backend& be_;
  ModelOptions opt_;
  int layer_;
  Communicator& tp_;
  int64_t C_, Cl_, Hl_;  // model dim, local attention width, local heads
  W w_{};
  bool offload_input_ = false;
  bool bf16_ = false;          // Precision::BF16
  DType act_ = DType::F32;     // dtype of the stored GEMM inputs (ln1, ln2, fc, gelu)
};

}  // namespace tandem
