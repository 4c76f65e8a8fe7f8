// Token shard writer and mmap reader (format and contract in token_shard.h).
#include "runtime/data/token_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "runtime/core/error.h"

namespace tandem {
namespace {

static_assert(std::endian::native == std::endian::little, "token shards assume a little-endian host");

constexpr char kMagic[8] = {'T', 'N', 'D', 'M', 'T', 'O', 'K', '\0'};

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t vocab_size;
  uint64_t ntokens;
  uint64_t reserved;
};
static_assert(sizeof(Header) == kTokenShardHeaderBytes);

std::string errno_text() { return std::strerror(errno); }

}  // namespace

void write_token_shard(const std::string& path, std::span<const int32_t> ids, int vocab_size) {
  TANDEM_CHECK(vocab_size > 0 && vocab_size <= 65536,
               "token shard '{}': vocab_size {} must be in [1, 65536] for uint16 tokens", path,
               vocab_size);
  std::vector<uint16_t> toks(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    TANDEM_CHECK(ids[i] >= 0 && ids[i] < vocab_size,
                 "token shard '{}': token {} at position {} is outside [0, {})", path, ids[i], i,
                 vocab_size);
    toks[i] = static_cast<uint16_t>(ids[i]);
  }
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kTokenShardVersion;
  h.vocab_size = static_cast<uint32_t>(vocab_size);
  h.ntokens = ids.size();
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  TANDEM_CHECK(f != nullptr, "cannot create token shard '{}': {}", tmp, errno_text());
  bool ok = std::fwrite(&h, sizeof(h), 1, f) == 1;
  if (ok && !toks.empty()) ok = std::fwrite(toks.data(), sizeof(uint16_t), toks.size(), f) == toks.size();
  const std::string werr = ok ? std::string() : errno_text();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    std::remove(tmp.c_str());
    throw Error(fmt::format("error writing token shard '{}' ({} tokens): {}", tmp, ids.size(),
                            ok ? errno_text() : werr));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = errno_text();
    std::remove(tmp.c_str());
    throw Error(fmt::format("cannot rename '{}' to '{}': {}", tmp, path, err));
  }
}

TokenShard TokenShard::open(const std::string& path) {
  TokenShard s;
  s.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TANDEM_CHECK(fd >= 0, "cannot open token shard '{}': {}", path, errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string err = errno_text();
    ::close(fd);
    throw Error(fmt::format("cannot stat token shard '{}': {}", path, err));
  }
  const auto bytes = static_cast<size_t>(st.st_size);
  if (bytes < kTokenShardHeaderBytes) {
    ::close(fd);
    throw Error(fmt::format("token shard '{}' is {} bytes, shorter than its {}-byte header", path,
                            bytes, kTokenShardHeaderBytes));
  }
  void* m = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  const std::string merr = m == MAP_FAILED ? errno_text() : std::string();
  ::close(fd);
  TANDEM_CHECK(m != MAP_FAILED, "cannot mmap token shard '{}' ({} bytes): {}", path, bytes, merr);
  s.map_ = m;
  s.map_bytes_ = bytes;
  Header h;
  std::memcpy(&h, m, sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
    std::string found;
    for (char c : h.magic) found += (c >= 32 && c < 127) ? std::string(1, c) : fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    throw Error(fmt::format("'{}' is not a token shard: magic is '{}', expected 'TNDMTOK\\0'",
                            path, found));
  }
  TANDEM_CHECK(h.version == kTokenShardVersion,
               "token shard '{}' has format version {}, this build reads version {} (re-run "
               "`tandem data prepare`)", path, h.version, kTokenShardVersion);
  TANDEM_CHECK(h.vocab_size > 0 && h.vocab_size <= 65536,
               "token shard '{}' has vocab_size {}, outside [1, 65536]", path, h.vocab_size);
  const uint64_t expect = kTokenShardHeaderBytes + 2 * h.ntokens;
  TANDEM_CHECK(h.ntokens <= (bytes / 2) && expect == bytes,
               "token shard '{}' is {} bytes but its header says {} tokens ({} bytes expected); "
               "the file is truncated or corrupt", path, bytes, h.ntokens, expect);
  s.tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(m) + kTokenShardHeaderBytes);
  s.ntokens_ = static_cast<int64_t>(h.ntokens);
  s.vocab_size_ = static_cast<int>(h.vocab_size);
  return s;
}

TokenShard::TokenShard(TokenShard&& o) noexcept { *this = std::move(o); }

TokenShard& TokenShard::operator=(TokenShard&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    tokens_ = o.tokens_;
    ntokens_ = o.ntokens_;
    vocab_size_ = o.vocab_size_;
    o.map_ = nullptr;
    o.map_bytes_ = 0;
    o.tokens_ = nullptr;
    o.ntokens_ = 0;
  }
  return *this;
}

TokenShard::~TokenShard() { release(); }

void TokenShard::release() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
  ntokens_ = 0;
}

}  // namespace tandem
