// ModelOptions: the GPT-2 architecture sizes (YAML section `model`).
//
// Contract: plain data, validated by launch/config before use. The embedding table is padded
// to a multiple of kVocabPad rows (padding rows never enter the softmax), so its size does not
// depend on the parallel layout.
#pragma once

#include <cstdint>

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

}  // namespace tandem
