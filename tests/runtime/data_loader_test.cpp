// DataLoader (windows, shuffling, epochs, data-parallel slices, errors) and `tandem data
// prepare` end to end on small inputs (the latter skips when data/gpt2 has not been fetched).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>

#include "launch/data_command.h"
#include "runtime/core/error.h"
#include "runtime/data/bpe_tokenizer.h"
#include "runtime/data/brown_corpus.h"
#include "runtime/data/data_loader.h"
#include "runtime/data/token_shard.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

const std::string kGpt2Dir = std::string(TANDEM_DATA_DIR) + "/gpt2";

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() /
                     fmt::format("tandem_loader_test_{}_{}", name, static_cast<long>(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Three shards (300, 1 and 700 tokens) whose token at stream position p is p: W = 100 at L = 10.
class DataLoaderTest : public ::testing::Test {
 protected:
  static constexpr int64_t kL = 10, kTokens = 1001, kW = 100;
  void SetUp() override {
    dir_ = fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    int64_t p = 0, i = 0;
    for (int64_t n : {300, 1, 700}) {
      std::vector<int32_t> t(static_cast<size_t>(n));
      std::iota(t.begin(), t.end(), static_cast<int32_t>(p));
      write_token_shard((dir_ / fmt::format("train_{:03d}.bin", i++)).string(), t, 2000);
      p += n;
    }
    pattern_ = (dir_ / "train_*.bin").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The whole global batch of `step`: inputs then targets, each B*L.
  static std::pair<std::vector<int32_t>, std::vector<int32_t>> global(const DataLoader& dl,
                                                                      int64_t step) {
    std::vector<int32_t> in(static_cast<size_t>(dl.global_batch() * dl.seq_len()));
    std::vector<int32_t> tg(in.size());
    dl.batch(step, 0, dl.global_batch(), in.data(), tg.data());
    return {in, tg};
  }

  fs::path dir_;
  std::string pattern_;
};

TEST_F(DataLoaderTest, CountsWindowsAndTokens) {
  const DataLoader dl(pattern_, kL, 8, 1, true);
  EXPECT_EQ(dl.tokens(), kTokens);
  EXPECT_EQ(dl.windows(), kW);
  EXPECT_EQ(dl.vocab_size(), 2000);
  ASSERT_EQ(dl.files().size(), 3u);
  EXPECT_NE(dl.files()[0].find("train_000.bin"), std::string::npos);
  EXPECT_EQ(DataLoader(pattern_, 1000, 1, 1, true).windows(), 1);
  EXPECT_THROW(DataLoader(pattern_, 1001, 1, 1, true), ConfigError);  // (1001-1)/1001 = 0
}

TEST_F(DataLoaderTest, TargetsAreInputsShiftedByOneAcrossShardBoundaries) {
  const DataLoader dl(pattern_, kL, 8, 7, true);
  for (int64_t step = 0; step < 40; ++step) {
    const auto [in, tg] = global(dl, step);
    for (int64_t i = 0; i < 8; ++i) {
      const int64_t w = dl.window_of(step * 8 + i);
      for (int64_t k = 0; k < kL; ++k) {
        ASSERT_EQ(in[i * kL + k], w * kL + k) << "step " << step << " sample " << i;
        ASSERT_EQ(tg[i * kL + k], w * kL + k + 1) << "step " << step << " sample " << i;
      }
    }
  }
}

TEST_F(DataLoaderTest, DeterministicForASeedAndDifferentAcrossSeeds) {
  const DataLoader a(pattern_, kL, 8, 42, true), b(pattern_, kL, 8, 42, true), c(pattern_, kL, 8, 43, true);
  bool differs = false;
  for (int64_t step = 0; step < 30; ++step) {
    EXPECT_EQ(global(a, step), global(b, step)) << "step " << step;
    differs |= global(a, step) != global(c, step);
  }
  EXPECT_TRUE(differs);
}

TEST_F(DataLoaderTest, EachEpochVisitsEveryWindowOnceThenReshuffles) {
  const DataLoader dl(pattern_, kL, 8, 5, true);
  std::vector<int64_t> first_epoch;
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> order;
    for (int64_t g = e * kW; g < (e + 1) * kW; ++g) order.push_back(dl.window_of(g));
    std::set<int64_t> seen(order.begin(), order.end());
    EXPECT_EQ(seen.size(), static_cast<size_t>(kW)) << "epoch " << e;
    EXPECT_EQ(*seen.begin(), 0);
    EXPECT_EQ(*seen.rbegin(), kW - 1);
    EXPECT_EQ(order, shuffled_windows(kW, 5, e));
    if (e == 0) first_epoch = order;
    else EXPECT_NE(order, first_epoch) << "epoch " << e << " repeats epoch 0's order";
  }
  // Step 12 of batch 8 holds samples 96..103: the last 4 of epoch 0, the first 4 of epoch 1.
  const auto [in, tg] = global(dl, 12);
  const auto p0 = shuffled_windows(kW, 5, 0), p1 = shuffled_windows(kW, 5, 1);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(in[static_cast<size_t>(i * kL)], p0[96 + i] * kL);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(in[static_cast<size_t>((4 + i) * kL)], p1[i] * kL);
}

TEST_F(DataLoaderTest, DataParallelSlicesAreDisjointAndMakeTheGlobalBatch) {
  const int64_t B = 8;
  const DataLoader dl(pattern_, kL, B, 11, true);
  for (int64_t step : {0, 3, 12, 99}) {
    const auto [gin, gtg] = global(dl, step);
    for (int64_t dp : {1, 2, 4, 8}) {
      std::vector<int32_t> in, tg;
      for (int64_t r = 0; r < dp; ++r) {
        const int64_t first = r * B / dp, count = B / dp;
        std::vector<int32_t> ri(static_cast<size_t>(count * kL)), rt(ri.size());
        dl.batch(step, first, count, ri.data(), rt.data());
        in.insert(in.end(), ri.begin(), ri.end());
        tg.insert(tg.end(), rt.begin(), rt.end());
      }
      EXPECT_EQ(in, gin) << "step " << step << " dp " << dp;
      EXPECT_EQ(tg, gtg) << "step " << step << " dp " << dp;
    }
    // Within one epoch no window repeats (a batch that straddles two epochs may repeat one).
    if ((step * B) / kW != (step * B + B - 1) / kW) continue;
    std::set<int64_t> windows;
    for (int64_t i = 0; i < B; ++i) windows.insert(dl.window_of(step * B + i));
    EXPECT_EQ(windows.size(), static_cast<size_t>(B)) << "a window repeats inside step " << step;
  }
}

TEST_F(DataLoaderTest, ValidationOrderWithoutShuffle) {
  const DataLoader dl(pattern_, kL, 4, 1, false);
  for (int64_t g = 0; g < 3 * kW; ++g) ASSERT_EQ(dl.window_of(g), g % kW);
  const auto [in, tg] = global(dl, 25);  // samples 100..103 wrap to windows 0..3
  for (int i = 0; i < 4; ++i) EXPECT_EQ(in[static_cast<size_t>(i * kL)], i * kL);
}

TEST_F(DataLoaderTest, Errors) {
  const std::string missing = (dir_ / "nothing_*.bin").string();
  try {
    DataLoader(missing, kL, 8, 1, true);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  write_token_shard((dir_ / "tiny_000.bin").string(), std::vector<int32_t>{1, 2, 3}, 10);
  try {
    DataLoader((dir_ / "tiny_*.bin").string(), kL, 8, 1, true);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("tiny_*.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 tokens"), std::string::npos) << e.what();
  }
  write_token_shard((dir_ / "train_999.bin").string(), std::vector<int32_t>{1, 2, 3}, 10);
  EXPECT_THROW(DataLoader(pattern_, kL, 8, 1, true), Error);  // vocab 10 vs 2000
  fs::remove(dir_ / "train_999.bin");
  const DataLoader dl(pattern_, kL, 8, 1, true);
  std::vector<int32_t> in(100), tg(100);
  EXPECT_THROW(dl.batch(0, 6, 3, in.data(), tg.data()), Error);
  EXPECT_THROW(dl.batch(-1, 0, 1, in.data(), tg.data()), Error);
  EXPECT_THROW(DataLoader(pattern_, 0, 8, 1, true), Error);
}

TEST(DataLoaderShuffle, PortableGoldenPermutation) {
  // Pinned (and checked against a Python transcription of splitmix64 + Fisher-Yates): this
  // order must not change across compilers, standard libraries or platforms.
  EXPECT_EQ(shuffled_windows(10, 1234, 0), (std::vector<int64_t>{9, 5, 8, 2, 7, 3, 6, 4, 0, 1}));
  EXPECT_EQ(shuffled_windows(10, 1234, 1), (std::vector<int64_t>{7, 4, 1, 0, 2, 8, 5, 6, 9, 3}));
  EXPECT_EQ(shuffled_windows(1, 9, 3), (std::vector<int64_t>{0}));
  EXPECT_TRUE(shuffled_windows(0, 9, 3).empty());
}

// ---------------------------------------------------------------- tandem data prepare

bool have_gpt2() { return fs::exists(kGpt2Dir + "/encoder.json"); }

int run_data_command(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return data_command(static_cast<int>(argv.size()), argv.data());
}

std::vector<int32_t> read_split(const fs::path& dir, const std::string& split) {
  std::vector<int32_t> out;
  for (const auto& f : expand_glob((dir / (split + "_*.bin")).string())) {
    const TokenShard s = TokenShard::open(f);
    out.insert(out.end(), s.data(), s.data() + s.size());
  }
  return out;
}

TEST(DataPrepare, CommandLineErrorsNameTheValue) {
  auto expect_config_error = [](std::vector<std::string> args, const std::string& part) {
    try {
      run_data_command(args);
      ADD_FAILURE() << "expected a ConfigError mentioning " << part;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_config_error({"prepare", "--input", "x", "--out", "y"}, "--tokenizer");
  expect_config_error({"prepare", "--tokenizer", "t", "--out", "y"}, "--input");
  expect_config_error({"prepare", "--tokenizer", "t", "--input", "/nonexistent/corpus.txt", "--out", "y"},
                      "/nonexistent/corpus.txt");
  expect_config_error({"prepare", "--bogus", "1"}, "--bogus");
  expect_config_error({"prepare", "--val-fraction", "abc"}, "abc");
  expect_config_error({"prepare", "--tokenizer", "t", "--input", TANDEM_TEST_DATA, "--out", "y",
                       "--val-fraction", "1.5"}, "1.5");
  expect_config_error({"prepare", "--tokenizer", "t", "--input", TANDEM_TEST_DATA, "--out", "y",
                       "--format", "xml"}, "xml");
  expect_config_error({"frobnicate"}, "frobnicate");
  EXPECT_EQ(run_data_command({"version"}), 0);
}

TEST(DataPrepare, TextFileToShards) {
  if (!have_gpt2()) GTEST_SKIP() << "GPT-2 BPE files not found in " << kGpt2Dir << " (run ./launch/fetch_data)";
  const fs::path d = fresh_dir("prepare_text");
  const std::string text =
      strip_brown_tags(slurp(std::string(TANDEM_TEST_DATA) + "/brown_tagged_excerpt.txt"));
  std::ofstream(d / "in.txt", std::ios::binary) << text;
  fs::create_directories(d / "out");
  std::ofstream(d / "out" / "train_007.bin") << "stale";
  ASSERT_EQ(run_data_command({"prepare", "--tokenizer", kGpt2Dir, "--input", (d / "in.txt").string(),
                              "--out", (d / "out").string(), "--val-fraction", "0.1",
                              "--shard-tokens=500"}), 0);
  EXPECT_FALSE(fs::exists(d / "out" / "train_007.bin")) << "stale shard not removed";
  const BpeTokenizer tok = BpeTokenizer::load(kGpt2Dir);
  const auto train = read_split(d / "out", "train"), val = read_split(d / "out", "val");
  std::vector<int32_t> all = train;
  all.insert(all.end(), val.begin(), val.end());
  std::vector<int32_t> expected = tok.encode(text);
  expected.push_back(tok.eot_id());
  EXPECT_EQ(all, expected);
  EXPECT_NEAR(static_cast<double>(val.size()), 0.1 * static_cast<double>(all.size()), 1.0);
  EXPECT_EQ(expand_glob((d / "out" / "train_*.bin").string()).size(), (train.size() + 499) / 500);
  EXPECT_TRUE(fs::exists(d / "out" / "train_001.bin"));
  EXPECT_EQ(slurp(d / "out" / "plain.txt"), text + "<|endoftext|>\n");
  const DataLoader dl((d / "out" / "train_*.bin").string(), 64, 4, 1, true);
  EXPECT_EQ(dl.tokens(), static_cast<int64_t>(train.size()));
  EXPECT_EQ(dl.vocab_size(), 50257);
  fs::remove_all(d);
}

TEST(DataPrepare, BrownDirectoryLastDocumentsGoToVal) {
  if (!have_gpt2()) GTEST_SKIP() << "GPT-2 BPE files not found in " << kGpt2Dir << " (run ./launch/fetch_data)";
  const fs::path d = fresh_dir("prepare_brown");
  const std::string tagged = slurp(std::string(TANDEM_TEST_DATA) + "/brown_tagged_excerpt.txt");
  fs::create_directories(d / "raw");
  std::ofstream(d / "raw" / "cb01", std::ios::binary) << tagged.substr(0, tagged.size() / 2);
  std::ofstream(d / "raw" / "ca01", std::ios::binary) << tagged;
  std::ofstream(d / "raw" / "README") << "not a corpus file";
  PrepareOptions o;
  o.tokenizer = kGpt2Dir;
  o.input = (d / "raw").string();
  o.out = (d / "out").string();
  const PrepareResult r = prepare_data(o);  // format: brown, as the input is a directory
  EXPECT_EQ(r.documents, 2);
  EXPECT_EQ(r.train_docs, 1);
  EXPECT_EQ(r.val_docs, 1);
  const BpeTokenizer tok = BpeTokenizer::load(kGpt2Dir);
  auto expect_doc = [&](const std::string& split, const std::string& tagged_doc) {
    std::vector<int32_t> ids = tok.encode(strip_brown_tags(tagged_doc));
    ids.push_back(tok.eot_id());
    EXPECT_EQ(read_split(d / "out", split), ids) << split;
  };
  expect_doc("train", tagged);                              // ca01 sorts first
  expect_doc("val", tagged.substr(0, tagged.size() / 2));   // cb01 is the last document
  EXPECT_EQ(r.train_tokens + r.val_tokens,
            static_cast<int64_t>(read_split(d / "out", "train").size() + read_split(d / "out", "val").size()));
  fs::remove_all(d);
}

TEST(DataPrepare, FetchedBrownShardsLoad) {
  const std::string dir = std::string(TANDEM_DATA_DIR) + "/brown";
  if (!fs::exists(dir + "/train_000.bin"))
    GTEST_SKIP() << "Brown shards not found in " << dir << " (run ./launch/fetch_data build/tandem)";
  const DataLoader train(dir + "/train_*.bin", 256, 16, 1, true);
  const DataLoader val(dir + "/val_*.bin", 256, 16, 1, false);
  EXPECT_EQ(train.vocab_size(), 50257);
  EXPECT_GT(train.tokens(), 1'000'000);
  EXPECT_GT(val.tokens(), 20'000);
  std::vector<int32_t> in(16 * 256), tg(in.size());
  train.batch(3, 0, 16, in.data(), tg.data());
  for (int32_t t : in) ASSERT_TRUE(t >= 0 && t < 50257);
}

}  // namespace
}  // namespace tandem
