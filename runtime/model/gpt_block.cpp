// One GPT-2 block: parameters, forward (with recompute-aware saving) and backward.
#include "runtime/model/gpt_block.h"

#include <cmath>

#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/gelu.h"
#include "kernels/kv_attention.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"

namespace tandem {

namespace k = kernels;

namespace {

ParamSpec replicated(std::string name, int64_t n, ParamInit init, bool owner) {
  ParamSpec s;
  s.name = std::move(name);
  s.logical = {n};
  s.init = init;
  s.norm_owner = owner;
  return s;
}

}  // namespace

std::vector<ParamSpec> TransformerBlock::param_specs(const ModelOptions& opt, int layer, int parts,
                                                     int r) {
  const int64_t C = opt.dim;
  TANDEM_CHECK(opt.heads % parts == 0, "model.heads={} is not divisible by parallel.tp={}",
               opt.heads, parts);
  const int64_t Cl = C / parts;
  const std::string p = fmt::format("h.{}.", layer);
  const bool owner = r == 0;  // replicated across tp: one rank counts the gradient norm
  const float std_w = 0.02f;
  const float std_res = 0.02f / std::sqrt(2.0f * static_cast<float>(opt.layers));

  auto sharded = [&](std::string name, Shape logical, Shape view, int dim, Shape compute,
                     ParamInit init, float std, bool decay) {
    ParamSpec s;
    s.name = std::move(name);
    s.logical = std::move(logical);
    s.view = std::move(view);
    s.shard_dim = dim;
    s.shard_parts = parts;
    s.shard_index = r;
    s.compute = std::move(compute);
    s.init = init;
    s.init_std = std;
    s.decay = decay;
    return s;
  };
  return {
      replicated(p + "ln1.w", C, ParamInit::Ones, owner),
      replicated(p + "ln1.b", C, ParamInit::Zeros, owner),
      sharded(p + "attn.qkv.w", {3 * C, C}, {3, C, C}, 1, {3 * Cl, C}, ParamInit::Normal, std_w, true),
      sharded(p + "attn.qkv.b", {3 * C}, {3, C}, 1, {3 * Cl}, ParamInit::Zeros, 0, false),
      sharded(p + "attn.proj.w", {C, C}, {C, C}, 1, {C, Cl}, ParamInit::Normal, std_res, true),
      replicated(p + "attn.proj.b", C, ParamInit::Zeros, owner),
      replicated(p + "ln2.w", C, ParamInit::Ones, owner),
      replicated(p + "ln2.b", C, ParamInit::Zeros, owner),
      sharded(p + "mlp.fc.w", {4 * C, C}, {4 * C, C}, 0, {4 * Cl, C}, ParamInit::Normal, std_w, true),
      sharded(p + "mlp.fc.b", {4 * C}, {4 * C}, 0, {4 * Cl}, ParamInit::Zeros, 0, false),
      sharded(p + "mlp.proj.w", {C, 4 * C}, {C, 4 * C}, 1, {C, 4 * Cl}, ParamInit::Normal, std_res,
              true),
      replicated(p + "mlp.proj.b", C, ParamInit::Zeros, owner),
  };
}

TransformerBlock::TransformerBlock(ParamStore& store, const ModelOptions& opt, int layer,
                                   Communicator& tp, Precision precision)
    : store_(store), be_(store.backend()), opt_(opt), layer_(layer), tp_(tp),
      bf16_(precision == Precision::BF16), act_(bf16_ ? DType::BF16 : DType::F32) {
  const int parts = tp.size();
  C_ = opt.dim;
  Hl_ = opt.heads / parts;
  Cl_ = C_ / parts;
  for (ParamSpec& s : param_specs(opt, layer, parts, tp.rank())) store.add(std::move(s));
}

void TransformerBlock::bind() {
  TANDEM_CHECK(!bf16_ || store_.has_bf16(),
               "block {}: bf16 precision needs the parameter store's bf16 copy", layer_);
  const std::string p = fmt::format("h.{}.", layer_);
  auto g = [&](const char* n) { return &store_.get(p + n); };
  w_ = W{g("ln1.w"),      g("ln1.b"),     g("attn.qkv.w"), g("attn.qkv.b"),
         g("attn.proj.w"), g("attn.proj.b"), g("ln2.w"),      g("ln2.b"),
         g("mlp.fc.w"),    g("mlp.fc.b"),    g("mlp.proj.w"), g("mlp.proj.b")};
}

int64_t TransformerBlock::saved_bytes_per_token(const ModelOptions& opt, int tp, int64_t T,
                                                Recompute mode, Precision precision, DeviceKind device) {
  const int64_t C = opt.dim, Cl = C / tp, Hl = opt.heads / tp;
  if (mode == Recompute::Full) return 4 * C;
  const int64_t act = precision == Precision::BF16 ? 2 : 4;  // GEMM inputs: ln1, ln2, fc, gelu
  int64_t f32 = 2 * C + 3 * Cl + Cl + Hl + 4;  // x x1, qkv, att, lse, LayerNorm stats
  int64_t low = 2 * C + 4 * Cl;                // ln1 ln2, fc
  if (mode == Recompute::None) {
    if (k::attention_backward_reads_probs(device)) f32 += Hl * T;  // probabilities
    low += 4 * Cl;                                                  // gelu output
  }
  return 4 * f32 + act * low;
}

void TransformerBlock::layernorm(const Tensor& x, const Param& w, const Param& b, Tensor& out,
                                 Tensor& mean, Tensor& rstd) {
  const int64_t N = x.dim(0);
  out = be_.empty({N, C_}, act_);
  mean = be_.empty({N});
  rstd = be_.empty({N});
  k::layernorm_forward(be_, out, mean, rstd, x, w.value, b.value);
}

void TransformerBlock::row_parallel_residual(Tensor& out, const Tensor& in, const Tensor& w,
                                             const Param& b, const Tensor& residual) {
  k::linear_forward(be_, out, in, w, nullptr);  // partial sum over this rank's inputs
  tp_.all_reduce(out);
  k::add_bias(be_, out, b.value);  // once, after the reduction
  k::add_inplace(be_, out, residual);
}

void TransformerBlock::forward_into(const Tensor& x, int64_t b, int64_t T, bool keep_probs,
                                    bool keep_gelu, BlockSaved& s, Tensor& x2) {
  const int64_t N = b * T;
  s.x = x;
  layernorm(x, *w_.ln1_w, *w_.ln1_b, s.ln1, s.mean1, s.rstd1);
  s.qkv = be_.empty({N, 3 * Cl_});
  k::linear_forward(be_, s.qkv, s.ln1, gemm_weight(*w_.qkv_w), &w_.qkv_b->value);  // fp32 out
  Tensor att3 = be_.empty({b, T, Cl_});
  s.att = att3.view({N, Cl_});
  s.lse = be_.empty({b, Hl_, T});
  if (keep_probs) s.probs = be_.empty({b, Hl_, T, T});
  k::attention_forward(be_, att3, s.lse, keep_probs ? &s.probs : nullptr, s.qkv.view({b, T, 3 * Cl_}),
                       Hl_);
  Tensor x1 = be_.empty({N, C_});
  row_parallel_residual(x1, s.att, gemm_weight(*w_.proj_w), *w_.proj_b, x);
  s.x1 = x1;
  layernorm(x1, *w_.ln2_w, *w_.ln2_b, s.ln2, s.mean2, s.rstd2);
  s.fc = be_.empty({N, 4 * Cl_}, act_);
  Tensor g = be_.empty({N, 4 * Cl_}, act_);
  k::linear_gelu_forward(be_, g, s.fc, s.ln2, gemm_weight(*w_.fc_w), gemm_weight(*w_.fc_b));
  if (keep_gelu) s.gelu = g;
  s.complete = true;
  if (!x2.defined()) return;  // recompute for backward: the block output is not needed
  row_parallel_residual(x2, g, gemm_weight(*w_.fcp_w), *w_.fcp_b, x1);
}

Tensor TransformerBlock::forward(const Tensor& x, int64_t b, int64_t T, Recompute mode,
                                 BlockSaved* saved) {
  check_shape(x, {b * T, C_}, "block input");
  Tensor x2 = be_.empty({b * T, C_});
  BlockSaved scratch;
  BlockSaved& s = saved ? *saved : scratch;
  const bool keep_all = saved && mode == Recompute::None;
  forward_into(x, b, T, keep_all && k::attention_backward_reads_probs(be_.kind()), keep_all, s, x2);
  if (saved && mode == Recompute::Full) {
    Tensor input = s.x;
    s = BlockSaved{};
    if (offload_input_ && be_.kind() != DeviceKind::CPU) {
      s.x_host = be_.host_empty(input.shape());
      be_.copy(s.x_host, input);
    } else {
      s.x = input;
    }
  }
  return x2;
}

Tensor TransformerBlock::forward_cached(const Tensor& x, const InferBatchDevice& batch,
                                        KvCache& cache, int cache_layer) {
  const int64_t N = batch.N;
  check_shape(x, {N, C_}, "block input (cached inference)");
  auto rows = [&](int64_t cols) { return step_rows(be_, N, cols); };
  Tensor ln = rows(C_), mean = rows(0), rstd = rows(0);
  k::layernorm_forward(be_, ln, mean, rstd, x, w_.ln1_w->value, w_.ln1_b->value);
  Tensor qkv = rows(3 * Cl_);
  k::linear_forward(be_, qkv, ln, w_.qkv_w->value, &w_.qkv_b->value);
  Tensor& kc = cache.keys(cache_layer);
  Tensor& vc = cache.values(cache_layer);
  k::kv_cache_write(be_, kc, vc, qkv, batch.slots, Hl_);
  Tensor att = rows(Cl_);
  k::kv_attention_forward(be_, att, qkv, kc, vc, batch.block_table, batch.q_start, batch.ctx_len,
                          Hl_);
  Tensor x1 = rows(C_);
  row_parallel_residual(x1, att, w_.proj_w->value, *w_.proj_b, x);
  k::layernorm_forward(be_, ln, mean, rstd, x1, w_.ln2_w->value, w_.ln2_b->value);
  Tensor fc = rows(4 * Cl_);
  k::linear_forward(be_, fc, ln, w_.fc_w->value, &w_.fc_b->value);
  k::gelu_forward(be_, fc, fc);
  Tensor x2 = rows(C_);
  row_parallel_residual(x2, fc, w_.fcp_w->value, *w_.fcp_b, x1);
  return x2;
}

Tensor TransformerBlock::backward(const Tensor& dout, int64_t b, int64_t T, BlockSaved& saved) {
  const int64_t N = b * T;
  check_shape(dout, {N, C_}, "block output gradient");
  if (!saved.complete) {
    if (!saved.x.defined()) {  // offloaded input comes back from the host
      saved.x = be_.empty(saved.x_host.shape());
      be_.copy(saved.x, saved.x_host);
      saved.x_host = Tensor();
    }
    Tensor none;
    forward_into(saved.x, b, T, k::attention_backward_reads_probs(be_.kind()), /*keep_gelu=*/true,
                 saved, none);
  }
  BlockSaved& s = saved;
  Tensor dx = dout;  // consumed in place: becomes d(x1), then d(x)

  // MLP branch: x2 = x1 + fc_proj(gelu(fc(ln2(x1))))
  Tensor g = s.gelu;
  if (!g.defined()) {
    g = be_.empty({N, 4 * Cl_}, act_);
    k::gelu_forward(be_, g, s.fc);
  }
  Tensor dfc = be_.empty({N, 4 * Cl_}, act_);  // d(fc), through fc_proj and the GELU
  k::linear_backward_dgelu(be_, dfc, w_.fcp_w->grad, w_.fcp_b->grad, dx, g, gemm_weight(*w_.fcp_w),
                           s.fc);
  g = Tensor();
  Tensor dln = be_.empty({N, C_});
  k::linear_backward(be_, &dln, w_.fc_w->grad, &w_.fc_b->grad, dfc, s.ln2, gemm_weight(*w_.fc_w));
  dfc = Tensor();
  tp_.all_reduce(dln);
  k::layernorm_backward(be_, dx, w_.ln2_w->grad, w_.ln2_b->grad, dln, s.x1, w_.ln2_w->value, s.mean2,
                        s.rstd2);

  // Attention branch: x1 = x + proj(attn(ln1(x)))
  Tensor datt = be_.empty({N, Cl_});
  k::linear_backward(be_, &datt, w_.proj_w->grad, &w_.proj_b->grad, dx, s.att,
                     gemm_weight(*w_.proj_w));
  Tensor dqkv = be_.empty({b, T, 3 * Cl_});
  k::attention_backward(be_, dqkv, datt.view({b, T, Cl_}), s.qkv.view({b, T, 3 * Cl_}),
                        s.att.view({b, T, Cl_}), s.lse, s.probs.defined() ? &s.probs : nullptr, Hl_);
  datt = Tensor();
  Tensor dqkv2 = dqkv.view({N, 3 * Cl_});
  k::linear_backward(be_, &dln, w_.qkv_w->grad, &w_.qkv_b->grad, dqkv2, s.ln1,
                     gemm_weight(*w_.qkv_w));
  tp_.all_reduce(dln);
  k::layernorm_backward(be_, dx, w_.ln1_w->grad, w_.ln1_b->grad, dln, s.x, w_.ln1_w->value, s.mean1,
                        s.rstd1);
  saved = BlockSaved{};  // release the activations of this micro-batch
  return dx;
}

}  // namespace tandem
