// DataLoader: deterministic, layout-independent training/validation batches from token shards.
//
// Contract: the shards matching `pattern` (a glob; sorted by name) are concatenated into one
// token stream of tokens() tokens, cut into W = (tokens()-1)/seq_len non-overlapping windows
// of seq_len+1 tokens: window w starts at token w*seq_len; inputs are its first seq_len tokens
// and targets the same shifted by one. Global sample g (g = step*global_batch + i, i < the
// global batch) is window perm_e[g % W] of epoch e = g / W, where perm_e is a Fisher-Yates
// shuffle of 0..W-1 driven by splitmix64 seeded from (seed, e) (portable: identical on every
// platform and standard library); with shuffle=false it is window g % W (validation order).
// batch(step, first, count, ...) fills samples first .. first+count-1 of that step's global
// batch, so data-parallel rank r of dp takes first = r*global_batch/dp: slices are disjoint and
// the global batch is the same whatever the layout. All shards must share one vocab size.
// Errors (nothing matches the pattern, too few tokens for one window, bad arguments) throw
// tandem::Error naming the pattern and values. batch() is const and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/data/token_shard.h"

namespace tandem {

// Files matching a glob pattern, sorted; empty when none match.
std::vector<std::string> expand_glob(const std::string& pattern);

// A permutation of 0..n-1 (Fisher-Yates with splitmix64 seeded from seed and epoch).
std::vector<int64_t> shuffled_windows(int64_t n, uint64_t seed, int64_t epoch);

class DataLoader {
 public:
  DataLoader(const std::string& pattern, int64_t seq_len, int64_t global_batch, uint64_t seed,
             bool shuffle);
  DataLoader(DataLoader&&) noexcept;
  DataLoader& operator=(DataLoader&&) noexcept;
  ~DataLoader();

  void batch(int64_t step, int64_t first, int64_t count, int32_t* inputs, int32_t* targets) const;

  int64_t windows() const { return windows_; }
  int64_t tokens() const { return ntokens_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t global_batch() const { return global_batch_; }
  int vocab_size() const { return vocab_size_; }
  const std::string& pattern() const { return pattern_; }
  const std::vector<std::string>& files() const { return files_; }
  // The window that global sample g reads (g >= 0).
  int64_t window_of(int64_t g) const;

 private:
  // Copies tokens [begin, begin+n) of the concatenated stream into out.
  void copy_tokens(int64_t begin, int64_t n, int32_t* out) const;

  std::string pattern_;
  std::vector<std::string> files_;
  std::vector<TokenShard> shards_;
  std::vector<int64_t> starts_;  // starts_[i] = first stream index of shard i; back() = total
  int64_t seq_len_ = 0, global_batch_ = 0;
  uint64_t seed_ = 0;
  bool shuffle_ = true;
  int64_t ntokens_ = 0, windows_ = 0;
  int vocab_size_ = 0;

  struct PermCache;  // epoch -> permutation for the last few epochs, behind a lock
  std::unique_ptr<PermCache> perms_;
};

}  // namespace tandem
