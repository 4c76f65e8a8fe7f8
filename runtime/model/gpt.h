// Gpt: the GPT-2 model, or the pipeline stage of it that this rank computes.
//
// Architecture: learned token (wte) and position (wpe) embeddings, pre-LayerNorm blocks, a
// final LayerNorm (lnf) and an LM head tied to wte. The stage holding the embedding owns
// "wte"/"wpe"; the stage holding the head owns "lnf.*" and (when it is not also the embedding
// stage) a copy of "wte" whose gradient the pipeline sums with the embedding stage's.
//
// Contract: forward() runs one micro-batch through this stage and returns a StageState that
// backward() consumes. The head computes the loss and, when training, its own backward right
// away in row chunks, so full logits are never stored (with tp > 1 a rank only ever holds its
// vocabulary shard of them). Parameter gradients accumulate (+=) across micro-batches.
// Precision::BF16: the blocks run as gpt_block.h says; the head multiplies the final LayerNorm
// output (rounded to bf16) with wte's bf16 copy into fp32 logits, so softmax, loss and the
// logit gradient stay fp32 (the gradient is rounded to bf16 for its two GEMMs); the embedding
// lookups read the fp32 wte/wpe. The parameter store then keeps a bf16 copy of the weights:
// refresh_bf16() after writing the fp32 values. next_token_logits' head and the cached
// inference paths are fp32.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/parallel_options.h"
#include "runtime/model/gpt_block.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model_options.h"
#include "runtime/model/param_store.h"

namespace tandem {

struct StageLayout {
  int first_layer = 0;
  int num_layers = -1;  // -1: every layer
  bool has_embedding = true;
  bool has_head = true;
};

struct StageState {
  int64_t b = 0, T = 0;
  Tensor tokens, positions;        // [b*T] int32 on the device (embedding stage)
  std::vector<BlockSaved> blocks;  // one per local layer
  Tensor output;                   // non-head stages: hidden state [b*T, C] to send on;
                                   // head stage without targets: the final LayerNorm output
  Tensor dfinal;                   // head stage, training: gradient at the last block output
  double loss_sum = 0.0;           // head stage: sum of per-token losses of this micro-batch
  int64_t loss_tokens = 0;
};

class Gpt {
 public:
  // flat_pad: the flat parameter/gradient buffers are padded to a multiple of this (the
  // data-parallel size, so gradient buckets split evenly over dp ranks).
  // with_grads = false: an inference-only stage (no gradient buffer; backward must not run).
  Gpt(Backend& be, const ModelOptions& opt, const StageLayout& stage, Communicator& tp,
      Recompute recompute, int64_t flat_pad = 1, bool with_grads = true,
      Precision precision = Precision::F32);

  // The parameters a stage registers, in registration order, as tp rank `rank` of `parts`
  // holds them: a pure function of the options (Gpt's constructor registers exactly these).
  static std::vector<ParamSpec> stage_specs(const ModelOptions& opt, const StageLayout& stage,
                                            int parts, int rank);

  ParamStore& params() { return store_; }
  const ModelOptions& options() const { return opt_; }
  const StageLayout& stage() const { return stage_; }
  Backend& backend() { return be_; }
  Precision precision() const { return precision_; }
  void init(uint64_t seed) { store_.init(seed); }  // also refreshes the bf16 copy

  // tokens/targets: host int32 [b*T]. The embedding stage reads tokens; other stages read
  // `input` [b*T, C]. The head stage reads targets (nullptr: no loss) and, when `train`,
  // back-propagates the loss scaled by loss_scale (1 / tokens in the global batch).
  std::unique_ptr<StageState> forward(int64_t b, int64_t T, const int32_t* tokens,
                                      const Tensor* input, const int32_t* targets, bool train,
                                      float loss_scale);
  // dout: gradient of state.output (non-head stages; ignored on the head stage). Returns the
  // gradient of the stage input (undefined on the embedding stage). Releases the state.
  // grads_final_from, when set, is called after each block's backward with the flat offset
  // from which this micro-batch's gradient contributions are complete (for the last
  // micro-batch of a step: every gradient at or past that offset is final).
  Tensor backward(StageState& st, const Tensor* dout,
                  const std::function<void(int64_t)>& grads_final_from = {});
  // Flat offset of the first parameter of local block l (for gradient-sync watermarks).
  int64_t block_offset(int l) const;

  // Cached inference (kernels/kv_attention.h): runs the batch's new tokens through this stage,
  // appending their keys and values to `cache` (one cache layer per local block). The
  // embedding stage reads batch.tokens, other stages `input` [N, C]. Returns the hidden state
  // [N, C] on non-head stages, and on the head stage the final LayerNorm of the rows in
  // batch.logit_rows [R, C] (feed it to head_logits).
  Tensor forward_cached(const InferBatch& batch, const Tensor* input, KvCache& cache);
  // Head stage: this tp rank's shard of the logits, h [R, C] -> [R, local_vocab()], columns
  // for global ids vocab_begin() + j (ids >= model.vocab are padding). Never gathered.
  Tensor head_logits(const Tensor& h);
  int64_t vocab_begin() const { return vocab_begin_; }
  int64_t local_vocab() const { return Vl_; }
  // A KV cache shaped for this stage's local layers and heads.
  std::unique_ptr<KvCache> make_kv_cache(int64_t num_blocks, int64_t block_tokens);

  // Sampling support (a single-stage model): logits of the next token after `context`
  // (full vocabulary, padding removed), gathered across the tp group.
  std::vector<float> next_token_logits(const std::vector<int32_t>& context);

  // Bytes of activations kept per micro-batch of b sequences (analytic, for reports).
  int64_t activation_bytes(int64_t b, int64_t T) const;
  int num_local_layers() const { return static_cast<int>(blocks_.size()); }
  // With recompute=full on a GPU backend, keep each block's saved input in host memory.
  void set_offload_block_inputs(bool on);

  // Boundaries inside forward() and backward() where the trainer may open a serving window
  // (runtime/train/safe_point.h): after each block of forward and of backward, and in the
  // head of a forward with targets after each of a row chunk's matmuls (logits; when
  // training also dx and dW), the longest spans of the step. Every rank of the tp group passes the same
  // boundaries in the same order. The cached-inference paths never call it.
  enum class Boundary { ForwardBlock, BackwardBlock, HeadChunk };
  void set_boundary_hook(std::function<void(Boundary)> hook) { boundary_hook_ = std::move(hook); }

 private:
  Tensor device_ids(const int32_t* host, int64_t n);
  Tensor positions(int64_t b, int64_t T);
  Tensor embed(const Tensor& ids, const Tensor& pos);
  void head(StageState& st, const Tensor& x, const int32_t* targets, bool train, float scale);

  Backend& be_;
  ModelOptions opt_;
  StageLayout stage_;
  Communicator& tp_;
  Recompute recompute_;
  Precision precision_;
  ParamStore store_;
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  std::vector<int64_t> block_offsets_;  // flat offset of each local block's first parameter
  Param *wte_ = nullptr, *wpe_ = nullptr, *lnf_w_ = nullptr, *lnf_b_ = nullptr;
  int64_t Vp_ = 0, Vl_ = 0, vocab_begin_ = 0;
  std::function<void(Boundary)> boundary_hook_;
};

}  // namespace tandem
