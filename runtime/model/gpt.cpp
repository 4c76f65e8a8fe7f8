// GPT-2 stage: embedding, blocks, tied LM head with chunked fused loss + backward.
#include "runtime/model/gpt.h"

#include <algorithm>

#include "kernels/cast.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"

namespace tandem {

namespace k = kernels;

std::vector<ParamSpec> Gpt::stage_specs(const ModelOptions& opt, const StageLayout& stage, int parts,
                                        int r) {
  const int64_t Vp = opt.padded_vocab(), C = opt.dim;
  const int num_layers = stage.num_layers < 0 ? opt.layers - stage.first_layer : stage.num_layers;
  std::vector<ParamSpec> out;
  auto wte_spec = [&](bool norm_owner) {
    ParamSpec s;
    s.name = "wte";
    s.logical = {Vp, C};
    s.stored = {opt.vocab, C};  // the padding rows are never stored
    s.shard_dim = 0;
    s.shard_parts = parts;
    s.shard_index = r;
    s.init = ParamInit::Normal;
    s.init_std = 0.02f;
    s.decay = true;
    s.norm_owner = norm_owner;
    return s;
  };
  if (stage.has_embedding) {
    out.push_back(wte_spec(true));
    ParamSpec wpe;
    wpe.name = "wpe";
    wpe.logical = {opt.seq_len, C};
    wpe.init = ParamInit::Normal;
    wpe.init_std = 0.02f;
    wpe.decay = true;
    wpe.norm_owner = r == 0;
    out.push_back(wpe);
  } else if (stage.has_head) {
    out.push_back(wte_spec(false));  // tied copy; its gradient is summed with the first stage's
  }
  for (int l = 0; l < num_layers; ++l)
    for (ParamSpec& s : TransformerBlock::param_specs(opt, stage.first_layer + l, parts, r))
      out.push_back(std::move(s));
  if (stage.has_head) {
    for (const char* n : {"lnf.w", "lnf.b"}) {
      ParamSpec s;
      s.name = n;
      s.logical = {C};
      s.init = n[4] == 'w' ? ParamInit::Ones : ParamInit::Zeros;
      s.norm_owner = r == 0;
      out.push_back(s);
    }
  }
  return out;
}

Gpt::Gpt(Backend& be, const ModelOptions& opt, const StageLayout& stage, Communicator& tp,
         Recompute recompute, int64_t flat_pad, bool with_grads, Precision precision)
    : be_(be), opt_(opt), stage_(stage), tp_(tp), recompute_(recompute), precision_(precision),
      store_(be) {
  if (stage_.num_layers < 0) stage_.num_layers = opt.layers - stage_.first_layer;
  TANDEM_CHECK(stage_.first_layer >= 0 && stage_.first_layer + stage_.num_layers <= opt.layers,
               "stage layers [{}, {}) outside the model's {} layers", stage_.first_layer,
               stage_.first_layer + stage_.num_layers, opt.layers);
  const int parts = tp.size(), r = tp.rank();
  Vp_ = opt.padded_vocab();
  TANDEM_CHECK(Vp_ % parts == 0, "padded vocabulary {} (model.vocab={}) is not divisible by tp={}",
               Vp_, opt.vocab, parts);
  Vl_ = Vp_ / parts;
  vocab_begin_ = r * Vl_;

  std::vector<ParamSpec> head;
  for (ParamSpec& sp : stage_specs(opt, stage_, parts, r)) {
    if (sp.name.rfind("h.", 0) == 0) continue;  // blocks register their own
    if (sp.name.rfind("lnf.", 0) == 0) head.push_back(std::move(sp));
    else store_.add(std::move(sp));
  }
  for (int l = 0; l < stage_.num_layers; ++l)
    blocks_.push_back(
        std::make_unique<TransformerBlock>(store_, opt, stage_.first_layer + l, tp, precision));
  for (ParamSpec& sp : head) store_.add(std::move(sp));
  store_.finalize(flat_pad, with_grads, precision == Precision::BF16);
  for (size_t l = 0; l < blocks_.size(); ++l) {
    blocks_[l]->bind();
    block_offsets_.push_back(store_.get(fmt::format("h.{}.ln1.w", stage_.first_layer + l)).offset);
  }
  wte_ = store_.find("wte");
  wpe_ = store_.find("wpe");
  lnf_w_ = store_.find("lnf.w");
  lnf_b_ = store_.find("lnf.b");
}

Tensor Gpt::device_ids(const int32_t* host, int64_t n) {
  Tensor src = Tensor::wrap(const_cast<int32_t*>(host), DeviceKind::CPU, {n}, DType::I32);
  Tensor dst = be_.empty({n}, DType::I32);
  be_.copy(dst, src);
  return dst;
}

Tensor Gpt::positions(int64_t b, int64_t T) {
  std::vector<int32_t> pos(static_cast<size_t>(b * T));
  for (int64_t i = 0; i < b * T; ++i) pos[i] = static_cast<int32_t>(i % T);
  return device_ids(pos.data(), b * T);
}

Tensor Gpt::embed(const Tensor& ids, const Tensor& pos) {
  // Vocab-parallel lookup: each rank adds the rows it holds, the sum completes the table.
  Tensor x = be_.empty({ids.numel(), static_cast<int64_t>(opt_.dim)});
  k::embedding_forward(be_, x, ids, wte_->value, vocab_begin_, false);
  tp_.all_reduce(x);
  k::embedding_forward(be_, x, pos, wpe_->value, 0, true);
  return x;
}

int64_t Gpt::activation_bytes(int64_t b, int64_t T) const {
  int64_t per_token = TransformerBlock::saved_bytes_per_token(opt_, tp_.size(), T, recompute_,
                                                              precision_, be_.kind()) *
                      static_cast<int64_t>(blocks_.size());
  if (stage_.has_head) per_token += 4 * (2 * opt_.dim + 2);  // lnf input gradient and stats
  return per_token * b * T;
}

std::unique_ptr<StageState> Gpt::forward(int64_t b, int64_t T, const int32_t* tokens,
                                         const Tensor* input, const int32_t* targets, bool train,
                                         float loss_scale) {
  TANDEM_CHECK(T >= 1 && T <= opt_.seq_len, "sequence length {} outside [1, model.seq_len={}]", T,
               opt_.seq_len);
  auto st = std::make_unique<StageState>();
  st->b = b;
  st->T = T;
  const int64_t N = b * T, C = opt_.dim;
  Tensor x;
  if (stage_.has_embedding) {
    TANDEM_CHECK(tokens != nullptr, "embedding stage needs tokens");
    st->tokens = device_ids(tokens, N);
    st->positions = positions(b, T);
    x = embed(st->tokens, st->positions);
  } else {
    TANDEM_CHECK(input != nullptr, "stage starting at layer {} needs an input activation",
                 stage_.first_layer);
    check_shape(*input, {N, C}, "stage input");
    x = *input;
  }
  st->blocks.resize(blocks_.size());
  for (size_t l = 0; l < blocks_.size(); ++l) {
    x = blocks_[l]->forward(x, b, T, recompute_, train ? &st->blocks[l] : nullptr);
    if (boundary_hook_) boundary_hook_(Boundary::ForwardBlock);
  }
  if (stage_.has_head) {
    head(*st, x, targets, train, loss_scale);
  } else {
    st->output = x;
  }
  if (!train) st->blocks.clear();
  return st;
}

void Gpt::head(StageState& st, const Tensor& x, const int32_t* targets, bool train, float scale) {
  const int64_t N = st.b * st.T, C = opt_.dim;
  // Mixed precision: lnf (the logits GEMM's input) in bf16, wte's bf16 copy; logits fp32.
  const bool bf16 = precision_ == Precision::BF16 && targets != nullptr;
  Tensor lnf = be_.empty({N, C}, bf16 ? DType::BF16 : DType::F32);
  Tensor mean = be_.empty({N}), rstd = be_.empty({N});
  k::layernorm_forward(be_, lnf, mean, rstd, x, lnf_w_->value, lnf_b_->value);
  if (targets == nullptr) {  // inference without a cache: hand the normalized state out
    st.output = lnf;
    return;
  }
  const Tensor& W = bf16 ? wte_->value_bf16 : wte_->value;
  Tensor tgt = device_ids(targets, N);
  Tensor dlnf = train ? be_.zeros({N, C}) : Tensor();
  // Row chunks bound the live logits to ~32 MB whatever the batch (and each chunk's matmuls
  // to ~25 ms on 2 cores at the quickstart shape: the head holds the longest spans between
  // serving safe points; 64 MB chunks were also slower, 1550 vs 1610 tok/s).
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 23) / std::max<int64_t>(Vl_, 1), 16, N);
  Tensor logits_buf = be_.empty({chunk, Vl_});
  Tensor stats_buf = be_.empty({2, chunk});  // rows: sumexp, target logit (one all-reduce)
  Tensor rowmax_buf = be_.empty({chunk});
  Tensor losses_buf = be_.empty({chunk});
  Tensor losses_host = be_.host_empty({chunk});
  Tensor dlogits16_buf = bf16 && train ? be_.empty({chunk, Vl_}, DType::BF16) : Tensor();
  double loss_sum = 0.0;
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t n = std::min(chunk, N - r0);
    Tensor xs = lnf.rows(r0, r0 + n);
    Tensor ts = tgt.rows(r0, r0 + n);
    Tensor logits = logits_buf.rows(0, n);
    Tensor rowmax = rowmax_buf.rows(0, n);
    Tensor stats = stats_buf.view({2 * chunk}).rows(0, 2 * n).view({2, n});
    Tensor sumexp = stats.rows(0, 1).view({n}), tlogit = stats.rows(1, 2).view({n});
    k::matmul(be_, logits, xs, false, W, true);
    if (boundary_hook_) boundary_hook_(Boundary::HeadChunk);  // each head matmul is its own span
    k::xent_row_max(be_, rowmax, logits, vocab_begin_, opt_.vocab);
    tp_.all_reduce(rowmax, ReduceOp::Max);
    k::xent_row_sumexp(be_, sumexp, logits, rowmax, vocab_begin_, opt_.vocab);
    k::xent_target_logit(be_, tlogit, logits, ts, vocab_begin_);
    if (tp_.size() > 1) {
      Tensor flat = stats_buf.view({2 * chunk}).rows(0, 2 * n);
      tp_.all_reduce(flat);
    }
    Tensor losses = losses_buf.rows(0, n);
    k::xent_losses(be_, losses, rowmax, sumexp, tlogit, ts);
    Tensor lh = losses_host.rows(0, n);
    be_.copy(lh, losses);
    for (int64_t i = 0; i < n; ++i) loss_sum += lh.f32()[i];
    if (!train) continue;
    k::xent_backward(be_, logits, logits, rowmax, sumexp, ts, vocab_begin_, opt_.vocab, scale);
    Tensor dl = logits;  // fp32 dlogits; rounded once for both GEMMs under mixed precision
    if (bf16) {
      dl = dlogits16_buf.rows(0, n);
      k::cast(be_, dl, logits);
    }
    Tensor dxs = dlnf.rows(r0, r0 + n);
    k::matmul(be_, dxs, dl, false, W, false);                                   // dx = dlogits W
    if (boundary_hook_) boundary_hook_(Boundary::HeadChunk);
    k::matmul(be_, wte_->grad, dl, true, xs, false, 1.0f, 1.0f);                // dW += dlogits^T x
    if (boundary_hook_) boundary_hook_(Boundary::HeadChunk);
  }
  st.loss_sum = loss_sum;
  int64_t counted = 0;
  for (int64_t i = 0; i < N; ++i) counted += targets[i] >= 0;
  st.loss_tokens = counted;
  if (!train) return;
  tp_.all_reduce(dlnf);
  Tensor dx = be_.zeros({N, C});
  k::layernorm_backward(be_, dx, lnf_w_->grad, lnf_b_->grad, dlnf, x, lnf_w_->value, mean, rstd);
  st.dfinal = dx;
}

void Gpt::set_offload_block_inputs(bool on) {
  for (auto& b : blocks_) b->set_offload_input(on);
}

int64_t Gpt::block_offset(int l) const {
  TANDEM_CHECK(l >= 0 && l < num_local_layers(), "block {} of {}", l, num_local_layers());
  return block_offsets_[l];
}

Tensor Gpt::backward(StageState& st, const Tensor* dout,
                     const std::function<void(int64_t)>& grads_final_from) {
  const int64_t b = st.b, T = st.T;
  Tensor d;
  if (stage_.has_head) {
    TANDEM_CHECK(st.dfinal.defined(), "backward on a head stage whose forward had no targets");
    d = st.dfinal;
  } else {
    TANDEM_CHECK(dout != nullptr, "stage ending at layer {} needs an output gradient",
                 stage_.first_layer + stage_.num_layers);
    d = be_.empty({b * T, opt_.dim});
    be_.copy(d, *dout);
  }
  for (size_t l = blocks_.size(); l-- > 0;) {
    d = blocks_[l]->backward(d, b, T, st.blocks[l]);
    if (grads_final_from) grads_final_from(block_offset(static_cast<int>(l)));
    if (boundary_hook_) boundary_hook_(Boundary::BackwardBlock);
  }
  Tensor din;
  if (stage_.has_embedding) {
    k::embedding_backward(be_, wte_->grad, d, st.tokens, vocab_begin_);
    k::embedding_backward(be_, wpe_->grad, d, st.positions, 0);
  } else {
    din = d;
  }
  st = StageState{};
  return din;
}

Tensor Gpt::forward_cached(const InferBatch& batch, const Tensor* input, KvCache& cache) {
  TANDEM_CHECK(cache.layers() == num_local_layers(), "KV cache has {} layers, the stage {}",
               cache.layers(), num_local_layers());
  batch.validate(cache.num_blocks(), cache.block_tokens(), opt_.seq_len, opt_.vocab);
  const InferBatchDevice dev = cache.upload(batch);
  const int64_t N = dev.N, C = opt_.dim;
  Tensor x;
  if (stage_.has_embedding) {
    x = step_rows(be_, N, C);
    k::embedding_forward(be_, x, dev.tokens, wte_->value, vocab_begin_, false);
    tp_.all_reduce(x);
    k::embedding_forward(be_, x, dev.positions, wpe_->value, 0, true);
  } else {
    TANDEM_CHECK(input != nullptr, "stage starting at layer {} needs an input activation",
                 stage_.first_layer);
    check_shape(*input, {N, C}, "stage input (cached inference)");
    x = *input;
  }
  for (size_t l = 0; l < blocks_.size(); ++l)
    x = blocks_[l]->forward_cached(x, dev, cache, static_cast<int>(l));
  if (!stage_.has_head) return x;
  const int64_t R = static_cast<int64_t>(batch.logit_rows.size());
  Tensor h = step_rows(be_, R, C);
  for (int64_t i = 0; i < R; ++i) {  // gather the wanted rows (a few per step)
    Tensor dst = h.rows(i, i + 1);
    be_.copy(dst, x.rows(batch.logit_rows[i], batch.logit_rows[i] + 1));
  }
  Tensor out = step_rows(be_, R, C), mean = step_rows(be_, R, 0), rstd = step_rows(be_, R, 0);
  if (R > 0) k::layernorm_forward(be_, out, mean, rstd, h, lnf_w_->value, lnf_b_->value);
  return out;
}

Tensor Gpt::head_logits(const Tensor& h) {
  TANDEM_CHECK(stage_.has_head, "head_logits on a stage without the head (layers {}..{})",
               stage_.first_layer, stage_.first_layer + stage_.num_layers - 1);
  const int64_t R = h.dim(0);
  Tensor logits = step_rows(be_, R, Vl_);
  if (R > 0) k::linear_forward(be_, logits, h, wte_->value, nullptr);
  return logits;
}

std::unique_ptr<KvCache> Gpt::make_kv_cache(int64_t num_blocks, int64_t block_tokens) {
  const int64_t width = static_cast<int64_t>(opt_.dim) / tp_.size();
  return std::make_unique<KvCache>(be_, num_local_layers(), num_blocks, block_tokens, width);
}

std::vector<float> Gpt::next_token_logits(const std::vector<int32_t>& context) {
  TANDEM_CHECK(stage_.has_embedding && stage_.has_head,
               "next_token_logits needs the whole model on this rank (pp=1)");
  TANDEM_CHECK(!context.empty(), "next_token_logits needs a non-empty context");
  const int64_t T = std::min<int64_t>(static_cast<int64_t>(context.size()), opt_.seq_len);
  const int32_t* ctx = context.data() + (context.size() - T);
  Tensor x = embed(device_ids(ctx, T), positions(1, T));
  for (auto& blk : blocks_) x = blk->forward(x, 1, T, recompute_, nullptr);
  Tensor last = x.rows(T - 1, T);
  Tensor lnf = be_.empty({1, opt_.dim}), mean = be_.empty({1}), rstd = be_.empty({1});
  k::layernorm_forward(be_, lnf, mean, rstd, last, lnf_w_->value, lnf_b_->value);
  Tensor logits = be_.empty({1, Vl_});
  k::matmul(be_, logits, lnf, false, wte_->value, true);
  Tensor all = be_.empty({Vp_});
  tp_.all_gather(all, logits.view({Vl_}));
  Tensor host = be_.host_empty({Vp_});
  be_.copy(host, all);
  return std::vector<float>(host.f32(), host.f32() + opt_.vocab);
}

}  // namespace tandem
