// Token shards: one binary file of uint16 GPT-2 token ids.
//
// Format (version 1, little-endian), a fixed 32-byte header then the tokens:
//   offset 0  char[8]  magic "TNDMTOK\0"
//   offset 8  uint32   version (kTokenShardVersion)
//   offset 12 uint32   vocab_size (every token id is < vocab_size <= 65536)
//   offset 16 uint64   token count N
//   offset 24 uint64   reserved (0)
//   offset 32 uint16[N]
// Contract: write_token_shard writes to PATH.tmp and renames, so a reader never sees a half
// file; it checks every id against vocab_size. TokenShard::open maps the file read-only and
// checks magic, version and that the file size is exactly 32 + 2*N; every error names the
// file and the values found. A TokenShard is move-only and unmaps on destruction.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace tandem {

inline constexpr uint32_t kTokenShardVersion = 1;
inline constexpr size_t kTokenShardHeaderBytes = 32;

void write_token_shard(const std::string& path, std::span<const int32_t> ids, int vocab_size);

class TokenShard {
 public:
  static TokenShard open(const std::string& path);

  TokenShard() = default;
  TokenShard(TokenShard&& o) noexcept;
  TokenShard& operator=(TokenShard&& o) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;
  ~TokenShard();

  const std::string& path() const { return path_; }
  int64_t size() const { return ntokens_; }
  int vocab_size() const { return vocab_size_; }
  const uint16_t* data() const { return tokens_; }
  std::span<const uint16_t> tokens() const { return {tokens_, static_cast<size_t>(ntokens_)}; }

 private:
  void release();

  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint16_t* tokens_ = nullptr;
  int64_t ntokens_ = 0;
  int vocab_size_ = 0;
};

}  // namespace tandem
