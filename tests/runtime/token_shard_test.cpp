// Token shards: write/read round trip, header layout, and errors that name the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/core/error.h"
#include "runtime/data/token_shard.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() /
                     fmt::format("tandem_shard_test_{}_{}", name, static_cast<long>(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

// Expects `f` to throw a tandem::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}

TEST(TokenShard, RoundTrip) {
  const fs::path d = fresh_dir("roundtrip");
  const std::string path = (d / "train_000.bin").string();
  std::vector<int32_t> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back((i * 7919) % 50257);
  ids.push_back(50256);
  write_token_shard(path, ids, 50257);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(fs::file_size(path), kTokenShardHeaderBytes + 2 * ids.size());
  const TokenShard s = TokenShard::open(path);
  EXPECT_EQ(s.path(), path);
  EXPECT_EQ(s.size(), static_cast<int64_t>(ids.size()));
  EXPECT_EQ(s.vocab_size(), 50257);
  for (size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(s.data()[i], ids[i]) << "at " << i;
  fs::remove_all(d);
}

TEST(TokenShard, HeaderLayout) {
  const fs::path d = fresh_dir("layout");
  const fs::path p = d / "x.bin";
  write_token_shard(p.string(), std::vector<int32_t>{1, 2, 65535}, 65536);
  const std::string b = read_bytes(p);
  ASSERT_EQ(b.size(), 32u + 6u);
  EXPECT_EQ(std::memcmp(b.data(), "TNDMTOK\0", 8), 0);
  uint32_t version, vocab;
  uint64_t n;
  std::memcpy(&version, b.data() + 8, 4);
  std::memcpy(&vocab, b.data() + 12, 4);
  std::memcpy(&n, b.data() + 16, 8);
  EXPECT_EQ(version, kTokenShardVersion);
  EXPECT_EQ(vocab, 65536u);
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(static_cast<unsigned char>(b[32 + 4]), 0xFF);
  EXPECT_EQ(static_cast<unsigned char>(b[32 + 5]), 0xFF);
  fs::remove_all(d);
}

TEST(TokenShard, EmptyShardAndMove) {
  const fs::path d = fresh_dir("empty");
  const std::string path = (d / "e.bin").string();
  write_token_shard(path, std::vector<int32_t>{}, 100);
  TokenShard a = TokenShard::open(path);
  EXPECT_EQ(a.size(), 0);
  TokenShard b = std::move(a);
  EXPECT_EQ(b.vocab_size(), 100);
  EXPECT_EQ(a.size(), 0);
  fs::remove_all(d);
}

TEST(TokenShard, WriterChecksTokensAndVocab) {
  const fs::path d = fresh_dir("writer");
  const std::string path = (d / "w.bin").string();
  expect_error([&] { write_token_shard(path, std::vector<int32_t>{1, 100, 3}, 100); },
               {path, "100", "position 1"});
  expect_error([&] { write_token_shard(path, std::vector<int32_t>{1}, 70000); }, {path, "70000"});
  expect_error([&] { write_token_shard((d / "no/such/dir/x.bin").string(), std::vector<int32_t>{1}, 10); },
               {"no/such/dir/x.bin"});
  fs::remove_all(d);
}

TEST(TokenShard, ReaderErrorsNameTheFile) {
  const fs::path d = fresh_dir("reader");
  const std::string missing = (d / "missing.bin").string();
  expect_error([&] { TokenShard::open(missing); }, {missing});

  const std::string bad_magic = (d / "magic.bin").string();
  write_bytes(bad_magic, std::string("NOTASHARD-------------------------------------", 40));
  expect_error([&] { TokenShard::open(bad_magic); }, {bad_magic, "magic", "NOTASHAR"});

  const std::string short_file = (d / "short.bin").string();
  write_bytes(short_file, "TNDM");
  expect_error([&] { TokenShard::open(short_file); }, {short_file, "4 bytes"});

  const std::string truncated = (d / "trunc.bin").string();
  write_token_shard(truncated, std::vector<int32_t>{1, 2, 3, 4}, 10);
  std::string b = read_bytes(truncated);
  b.resize(b.size() - 2);
  write_bytes(truncated, b);
  expect_error([&] { TokenShard::open(truncated); }, {truncated, "38 bytes", "4 tokens", "40"});

  const std::string version = (d / "version.bin").string();
  write_token_shard(version, std::vector<int32_t>{1}, 10);
  b = read_bytes(version);
  b[8] = 9;
  write_bytes(version, b);
  expect_error([&] { TokenShard::open(version); }, {version, "version 9"});
  fs::remove_all(d);
}

}  // namespace
}  // namespace tandem
