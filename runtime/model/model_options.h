// ModelOptions: the GPT-2 architecture sizes (YAML section `model`).
//
// Contract: plain data, validated by launch/config before use. The embedding table is padded
// to a multiple of kVocabPad rows (padding rows never enter the softmax), so its size does not
// depend on the parallel layout.
// Precision: the arithmetic of a training replica's GEMMs (YAML train.precision, parsed by
// launch/config; docs/architecture.md "Mixed precision"): F32 throughout, or BF16 operands with
// fp32 accumulation, fp32 master weights and gradients.
#pragma once

#include <cstdint>
#include <string>

namespace tandem {

struct ModelOptions {
  int layers = 4;
  int dim = 256;
  int heads = 4;
  int vocab = 50257;
  int seq_len = 128;

  static constexpr int kVocabPad = 128;
  int padded_vocab() const { return (vocab + kVocabPad - 1) / kVocabPad * kVocabPad; }
  int head_dim() const { return dim / heads; }
};

enum class Precision { F32, BF16 };

// "fp32" | "bf16" (train.precision's choices); false for anything else.
inline bool parse_precision(const std::string& s, Precision* out) {
  if (s == "fp32") *out = Precision::F32;
  else if (s == "bf16") *out = Precision::BF16;
  else return false;
  return true;
}

}  // namespace tandem
