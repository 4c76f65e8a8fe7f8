// DataOptions (YAML section `data`): where token shards and the tokenizer live.
//
// Contract: `train` and `val` are glob patterns of token shard files (see token_shard.h);
// `tokenizer` is a directory holding GPT-2's encoder.json and vocab.bpe. Relative paths are
// resolved against the working directory.
#pragma once

#include <string>

namespace tandem {

struct DataOptions {
  std::string train = "data/brown/train_*.bin";
  std::string val = "data/brown/val_*.bin";
  std::string tokenizer = "data/gpt2";
};

}  // namespace tandem
