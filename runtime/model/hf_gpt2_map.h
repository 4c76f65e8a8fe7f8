// Hugging Face GPT-2 interoperability: Tandem's logical parameter tensors <-> the state dict
// of `transformers`' GPT2LMHeadModel (names and layout), its config.json, and a model
// directory (model.safetensors + config.json).
//
// Tandem tensors (float32, PyTorch Linear layout [out, in]; C = dim, L = layers), in order:
//   wte [vocab, C] (unpadded), wpe [seq_len, C], per layer l: h.l.ln1.{w,b} [C],
//   h.l.attn.qkv.w [3C, C], h.l.attn.qkv.b [3C], h.l.attn.proj.w [C, C], h.l.attn.proj.b [C],
//   h.l.ln2.{w,b} [C], h.l.mlp.fc.w [4C, C], h.l.mlp.fc.b [4C], h.l.mlp.proj.w [C, 4C],
//   h.l.mlp.proj.b [C], then lnf.{w,b} [C].
// HF names: transformer.wte.weight, transformer.wpe.weight [n_positions, C],
//   transformer.h.l.{ln_1,ln_2}.{weight,bias}, transformer.h.l.attn.c_attn.{weight,bias},
//   transformer.h.l.attn.c_proj.*, transformer.h.l.mlp.c_fc.*, transformer.h.l.mlp.c_proj.*,
//   transformer.ln_f.*; the four Conv1D weights are stored transposed ([in, out]). The qkv row
//   order (q heads | k heads | v heads) is the same on both sides.
// Contract: tandem_to_hf writes no lm_head.weight (GPT-2's head is tied to wte; HF's own files
// omit it). hf_to_tandem accepts names with or without the "transformer." prefix, ignores the
// attention buffers h.l.attn.bias / h.l.attn.masked_bias, ignores lm_head.weight when it
// equals wte bitwise (error otherwise), and otherwise throws one tandem::Error that names every
// missing tensor, every shape mismatch (expected vs found) and every unknown tensor. Both
// directions check their input the same way and return tensors in their side's canonical order.
// ModelOptions::seq_len maps to n_positions (and n_ctx). parse_hf_config_json rejects configs
// Tandem does not compute the same way (activation other than tanh GELU, another layer norm
// epsilon, n_inner != 4 * n_embd, untied embeddings, other attention scaling).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ckpt/safetensors.h"
#include "runtime/model/model_options.h"

namespace tandem {

struct HfGpt2Config {
  int n_layer = 0, n_embd = 0, n_head = 0, vocab_size = 0, n_positions = 0;
};

HfGpt2Config hf_config_for(const ModelOptions& m);
// Throws when a size is not positive or n_embd is not a multiple of n_head.
ModelOptions model_options_from_hf(const HfGpt2Config& c);

// A GPT-2 config.json: model_type "gpt2", architectures ["GPT2LMHeadModel"],
// activation_function "gelu_new", layer_norm_epsilon 1e-5, n_ctx = n_positions,
// tie_word_embeddings true, torch_dtype "float32", dropout 0, ...
std::string hf_config_json(const HfGpt2Config& c);
// Throws naming every missing required key (n_layer, n_embd, n_head, vocab_size, n_positions)
// and any setting Tandem cannot honour.
HfGpt2Config parse_hf_config_json(const std::string& text);

std::vector<ckpt::HostTensor> tandem_to_hf(const std::vector<ckpt::HostTensor>& tandem,
                                           const ModelOptions& m);
std::vector<ckpt::HostTensor> hf_to_tandem(const std::vector<ckpt::HostTensor>& hf,
                                           const ModelOptions& m);

// Writes OUT_DIR/model.safetensors (metadata plus "format": "pt", which `transformers`
// requires) and OUT_DIR/config.json, creating OUT_DIR.
void write_hf_dir(const std::string& out_dir, const std::vector<ckpt::HostTensor>& tandem,
                  const ModelOptions& m, const std::map<std::string, std::string>& metadata = {});
// IN is a directory holding model.safetensors and config.json, or a .safetensors file with
// config.json beside it. Returns the model options and the Tandem tensors.
std::pair<ModelOptions, std::vector<ckpt::HostTensor>> read_hf_dir(const std::string& in);

}  // namespace tandem
