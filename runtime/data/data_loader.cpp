// DataLoader over token shards (contract in data_loader.h).
#include "runtime/data/data_loader.h"

#include <glob.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "runtime/core/error.h"
#include "runtime/core/hash.h"

namespace tandem {
namespace {

// The SplitMix64 stream: each draw mixes the state, then advances it by the golden increment.
uint64_t splitmix64_next(uint64_t& state) {
  const uint64_t z = splitmix64(state);
  state += 0x9E3779B97F4A7C15ull;
  return z;
}

// Uniform in [0, n) without modulo bias (rejects the low 2^64 mod n values).
uint64_t bounded(uint64_t& state, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;
  while (true) {
    const uint64_t r = splitmix64_next(state);
    if (r >= threshold) return r % n;
  }
}

constexpr size_t kCachedEpochs = 2;

}  // namespace

std::vector<std::string> expand_glob(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  TANDEM_CHECK(rc == 0 || rc == GLOB_NOMATCH, "glob('{}') failed with code {}", pattern, rc);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int64_t> shuffled_windows(int64_t n, uint64_t seed, int64_t epoch) {
  TANDEM_CHECK(n >= 0 && epoch >= 0, "shuffled_windows(n={}, epoch={})", n, epoch);
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  uint64_t state = seed;
  state = splitmix64_next(state) ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ull);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(bounded(state, static_cast<uint64_t>(i + 1)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

struct DataLoader::PermCache {
  std::mutex mu;
  std::map<int64_t, std::vector<int64_t>> by_epoch;
};

DataLoader::DataLoader(const std::string& pattern, int64_t seq_len, int64_t global_batch,
                       uint64_t seed, bool shuffle)
    : pattern_(pattern),
      seq_len_(seq_len),
      global_batch_(global_batch),
      seed_(seed),
      shuffle_(shuffle),
      perms_(std::make_unique<PermCache>()) {
  TANDEM_CHECK(seq_len > 0, "data loader '{}': seq_len must be positive, got {}", pattern, seq_len);
  TANDEM_CHECK(global_batch > 0, "data loader '{}': global_batch must be positive, got {}",
               pattern, global_batch);
  files_ = expand_glob(pattern);
  if (files_.empty())
    throw ConfigError(fmt::format("no token shards match '{}' (run ./launch/fetch_data, or "
                                  "`tandem data prepare`, or fix data.train / data.val)",
                                  pattern));
  starts_.push_back(0);
  for (const std::string& f : files_) {
    shards_.push_back(TokenShard::open(f));
    const TokenShard& s = shards_.back();
    if (vocab_size_ == 0) vocab_size_ = s.vocab_size();
    TANDEM_CHECK(s.vocab_size() == vocab_size_,
                 "token shard '{}' has vocab_size {} but '{}' has {} (pattern '{}')", f,
                 s.vocab_size(), files_.front(), vocab_size_, pattern);
    starts_.push_back(starts_.back() + s.size());
  }
  ntokens_ = starts_.back();
  windows_ = ntokens_ > 0 ? (ntokens_ - 1) / seq_len : 0;
  if (windows_ < 1)
    throw ConfigError(fmt::format("token shards '{}' hold {} tokens in {} file(s): too few for "
                                  "one window of seq_len+1 = {} tokens",
                                  pattern, ntokens_, files_.size(), seq_len + 1));
}

DataLoader::DataLoader(DataLoader&&) noexcept = default;
DataLoader& DataLoader::operator=(DataLoader&&) noexcept = default;
DataLoader::~DataLoader() = default;

int64_t DataLoader::window_of(int64_t g) const {
  TANDEM_CHECK(g >= 0, "data loader '{}': negative sample index {}", pattern_, g);
  const int64_t e = g / windows_, k = g % windows_;
  if (!shuffle_) return k;
  std::lock_guard<std::mutex> lock(perms_->mu);
  auto& cache = perms_->by_epoch;
  auto it = cache.find(e);
  if (it == cache.end()) {
    it = cache.emplace(e, shuffled_windows(windows_, seed_, e)).first;
    while (cache.size() > kCachedEpochs) cache.erase(cache.begin() == it ? std::next(it) : cache.begin());
  }
  return it->second[static_cast<size_t>(k)];
}

void DataLoader::copy_tokens(int64_t begin, int64_t n, int32_t* out) const {
  // The shard holding `begin`: the last start <= begin.
  size_t s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), begin) -
                                 starts_.begin()) - 1;
  while (n > 0) {
    TANDEM_CHECK(s < shards_.size(), "data loader '{}': token {} past the end ({} tokens)",
                 pattern_, begin, ntokens_);
    const int64_t off = begin - starts_[s];
    const int64_t take = std::min(n, shards_[s].size() - off);
    const uint16_t* src = shards_[s].data() + off;
    for (int64_t i = 0; i < take; ++i) out[i] = src[i];
    out += take;
    begin += take;
    n -= take;
    ++s;
  }
}

void DataLoader::batch(int64_t step, int64_t first, int64_t count, int32_t* inputs,
                       int32_t* targets) const {
  TANDEM_CHECK(step >= 0 && first >= 0 && count >= 0 && first + count <= global_batch_,
               "data loader '{}': batch(step={}, first={}, count={}) outside the global batch "
               "of {}", pattern_, step, first, count, global_batch_);
  std::vector<int32_t> window(static_cast<size_t>(seq_len_ + 1));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t g = step * global_batch_ + first + i;
    const int64_t w = window_of(g);
    copy_tokens(w * seq_len_, seq_len_ + 1, window.data());
    std::copy(window.begin(), window.end() - 1, inputs + i * seq_len_);
    std::copy(window.begin() + 1, window.end(), targets + i * seq_len_);
  }
}

}  // namespace tandem
