// BpeTokenizer: GPT-2 parity against ids from an independent encoder (the gpt-3-encoder npm
// package's own JavaScript, committed in tests/fixtures/bpe_cases.txt), the hand-written
// pre-tokenizer against the regex, merge semantics on a tiny vocabulary, round trips, speed.
// Tests that need the real vocabulary skip (visibly) when data/gpt2 has not been fetched.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/core/error.h"
#include "runtime/data/bpe_tokenizer.h"
#include "runtime/data/brown_corpus.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

const std::string kGpt2Dir = std::string(TANDEM_DATA_DIR) + "/gpt2";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool have_gpt2() { return fs::exists(kGpt2Dir + "/encoder.json") && fs::exists(kGpt2Dir + "/vocab.bpe"); }

#define SKIP_WITHOUT_GPT2()                                                                 \
  if (!have_gpt2())                                                                         \
  GTEST_SKIP() << "GPT-2 BPE files not found in " << kGpt2Dir                               \
               << " (run ./launch/fetch_data build/tandem; ./launch/test does it first)"

const BpeTokenizer& gpt2() {
  static const BpeTokenizer tok = BpeTokenizer::load(kGpt2Dir);
  return tok;
}

std::string from_hex(const std::string& hex) {
  std::string s;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    s.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) out.push_back(cur), cur.clear();
    else cur.push_back(c);
  }
  out.push_back(cur);
  return out;
}

// GPT-2's bytes_to_unicode, written again here so the tiny vocabulary below is independent.
std::string byte_symbol_json(int b) {
  std::vector<int> bs;
  for (int x = '!'; x <= '~'; ++x) bs.push_back(x);
  for (int x = 0xA1; x <= 0xAC; ++x) bs.push_back(x);
  for (int x = 0xAE; x <= 0xFF; ++x) bs.push_back(x);
  int cp = -1, n = 0;
  for (int x = 0; x < 256; ++x) {
    const bool printable = std::find(bs.begin(), bs.end(), x) != bs.end();
    if (x == b) cp = printable ? x : 256 + n;
    if (!printable) ++n;
  }
  return fmt::format("\\u{:04x}", cp);  // every symbol as a \u escape: exercises the parser
}

// 256 byte tokens (ids 0..255) + he, ll, hell, hello, <|endoftext|>.
BpeTokenizer tiny_tokenizer() {
  std::string json = "{";
  for (int b = 0; b < 256; ++b) json += fmt::format("\"{}\": {}, ", byte_symbol_json(b), b);
  json += "\"he\": 256, \"ll\": 257, \"hell\": 258, \"hello\": 259, \"<|endoftext|>\": 260}";
  const std::string merges = "#version: 0.2\nl l\nh e\nhe ll\nhell o\n";
  return BpeTokenizer::from_strings(json, merges, "tiny");
}

TEST(BpeTokenizerPretokenize, FollowsGpt2Pattern) {
  using V = std::vector<std::string_view>;
  // Expected pieces from JavaScript's String.matchAll with the same pattern.
  EXPECT_EQ(BpeTokenizer::pretokenize("Hello  world"), (V{"Hello", " ", " world"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("I'm here!!  "), (V{"I", "'m", " here", "!!", "  "}));
  EXPECT_EQ(BpeTokenizer::pretokenize("x\t y"), (V{"x", "\t", " y"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("don't stop 42x"), (V{"don", "'t", " stop", " 42", "x"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("  \n"), (V{"  \n"}));
  EXPECT_EQ(BpeTokenizer::pretokenize(" ?!"), (V{" ?!"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("caf\xc3\xa9 3\xc2\xbd"), (V{"caf\xc3\xa9", " 3\xc2\xbd"}));
  EXPECT_EQ(BpeTokenizer::pretokenize("\xc2\xa0x"), (V{"\xc2\xa0", "x"}));  // NBSP is \s, not ' '
  EXPECT_TRUE(BpeTokenizer::pretokenize("").empty());
}

TEST(BpeTokenizerPretokenize, InvalidUtf8IsKeptByteForByte) {
  const std::string s = "ab\xff\xfe cd\xc3";
  std::string joined;
  for (auto p : BpeTokenizer::pretokenize(s)) joined += p;
  EXPECT_EQ(joined, s);
}

TEST(BpeTokenizerTiny, MergesByRankAndParsesEscapes) {
  const BpeTokenizer t = tiny_tokenizer();
  EXPECT_EQ(t.vocab_size(), 261);
  EXPECT_EQ(t.eot_id(), 260);
  EXPECT_EQ(t.num_merges(), 4);
  EXPECT_EQ(t.encode("hello"), (std::vector<int32_t>{259}));
  // " hello": the space (byte 32 -> symbol U+0120) has no merge, so it stays a byte token.
  EXPECT_EQ(t.encode(" hello"), (std::vector<int32_t>{32, 259}));
  // "llll" -> ll ll (all occurrences of the best pair, left to right); "lll" -> ll l.
  EXPECT_EQ(t.encode("llll"), (std::vector<int32_t>{257, 257}));
  EXPECT_EQ(t.encode("lll"), (std::vector<int32_t>{257, 'l'}));
  EXPECT_EQ(t.encode("hel"), (std::vector<int32_t>{256, 'l'}));
  EXPECT_EQ(t.decode(t.encode("hello, world\n")), "hello, world\n");
}

TEST(BpeTokenizerTiny, ErrorsNameTheFile) {
  try {
    BpeTokenizer::from_strings("{\"a\": 0,", "#version: 0.2\n", "somewhere");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("somewhere/encoder.json"), std::string::npos) << e.what();
  }
  try {
    BpeTokenizer::load("/nonexistent/tokenizer");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tokenizer/encoder.json"), std::string::npos)
        << e.what();
  }
  const BpeTokenizer t = tiny_tokenizer();
  EXPECT_THROW(t.token_bytes(261), Error);
  EXPECT_THROW(t.token_bytes(-1), Error);
}

TEST(BpeTokenizerGpt2, LoadsVocabulary) {
  SKIP_WITHOUT_GPT2();
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().eot_id(), 50256);
  EXPECT_EQ(gpt2().num_merges(), 50000);
  EXPECT_EQ(gpt2().token_bytes(50256), "<|endoftext|>");
  EXPECT_EQ(gpt2().token_bytes(220), " ");
}

TEST(BpeTokenizerGpt2, MatchesIndependentEncoderOnFixtureCases) {
  SKIP_WITHOUT_GPT2();
  const std::string path = std::string(TANDEM_TEST_DATA) + "/bpe_cases.txt";
  std::istringstream in(slurp(path));
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto cols = split(line, '\t');
    ASSERT_EQ(cols.size(), 3u) << "bad fixture line: " << line;
    const std::string text = from_hex(cols[0]);
    std::vector<int32_t> expected;
    if (!cols[1].empty())
      for (const auto& id : split(cols[1], ' ')) expected.push_back(std::stoi(id));
    EXPECT_EQ(gpt2().encode(text), expected) << "text " << cols[2];
    EXPECT_EQ(gpt2().decode(expected), text) << "text " << cols[2];
    ++cases;
  }
  EXPECT_GE(cases, 30) << "fixture " << path;
}

TEST(BpeTokenizerGpt2, KnownIds) {
  SKIP_WITHOUT_GPT2();
  EXPECT_EQ(gpt2().encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  // <|endoftext|> in text is ordinary text, never the separator id.
  const auto ids = gpt2().encode("<|endoftext|>");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 50256), 0);
}

TEST(BpeTokenizerGpt2, RoundTripsBrownText) {
  SKIP_WITHOUT_GPT2();
  const std::string text =
      strip_brown_tags(slurp(std::string(TANDEM_TEST_DATA) + "/brown_tagged_excerpt.txt"));
  ASSERT_GT(text.size(), 3000u);
  const auto ids = gpt2().encode(text);
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_LT(ids.size(), text.size() / 2);
  EXPECT_EQ(gpt2().decode(ids), text);
  // Arbitrary bytes round-trip too (byte-level BPE).
  std::string bytes;
  for (int i = 0; i < 2000; ++i) bytes.push_back(static_cast<char>((i * 131 + 7) % 256));
  EXPECT_EQ(gpt2().decode(gpt2().encode(bytes)), bytes);
}

TEST(BpeTokenizerGpt2, EncodesWholeBrownCorpusQuickly) {
  SKIP_WITHOUT_GPT2();
  const std::string raw = std::string(TANDEM_DATA_DIR) + "/brown-raw";
  if (!fs::exists(raw + "/ca01")) GTEST_SKIP() << "Brown corpus not fetched into " << raw;
  std::string text;
  for (const auto& d : read_brown_corpus(raw)) text += d.text;
  const BpeTokenizer tok = BpeTokenizer::load(kGpt2Dir);  // cold cache
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("encoded %.2f MB of Brown text into %zu tokens in %.2f s (%.1f MB/s)\n",
              static_cast<double>(text.size()) / 1e6, ids.size(), s,
              static_cast<double>(text.size()) / 1e6 / s);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_LT(s, 30.0) << "tokenizing " << text.size() << " bytes took " << s << " s";
}

}  // namespace
}  // namespace tandem
