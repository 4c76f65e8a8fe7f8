// BpeTokenizer under untrusted input: the O(n log n) BPE equals GPT-2's plain loop (written
// again here as the reference) on random and adversarial words; one long word costs bounded
// work; encode_bounded() refuses a text that cannot fit before tokenizing it; the word cache
// stays within its byte bound however many unique words pass through.
// Tests that need the real vocabulary skip (visibly) when data/gpt2 has not been fetched.
#include <gtest/gtest.h>
#include <spdlog/fmt/fmt.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/data/bpe_tokenizer.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

const std::string kGpt2Dir = std::string(TANDEM_DATA_DIR) + "/gpt2";
bool have_gpt2() { return fs::exists(kGpt2Dir + "/encoder.json") && fs::exists(kGpt2Dir + "/vocab.bpe"); }
#define SKIP_WITHOUT_GPT2() \
  if (!have_gpt2()) GTEST_SKIP() << "GPT-2 BPE files not found in " << kGpt2Dir << " (run ./launch/setup)"

const BpeTokenizer& gpt2() {
  static const BpeTokenizer tok = BpeTokenizer::load(kGpt2Dir);
  return tok;
}

// GPT-2's bytes_to_unicode: byte -> the code point of its symbol.
int byte_code_point(int b) {
  auto printable = [](int x) { return (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF); };
  if (printable(b)) return b;
  int n = 0;
  for (int x = 0; x < b; ++x) n += !printable(x);
  return 256 + n;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// GPT-2's bpe() as written in its encoder.py, over token ids: find the lowest-ranked adjacent
// pair, merge all its occurrences left to right, repeat. Quadratic; the reference only.
std::vector<int32_t> reference_bpe(const std::string& word,
                                   const std::unordered_map<std::string, int32_t>& id_of,
                                   const std::unordered_map<std::string, int>& rank_of) {
  std::vector<std::string> w;
  for (char c : word) w.emplace_back(1, c);
  while (w.size() > 1) {
    int best = -1;
    size_t at = 0;
    for (size_t i = 0; i + 1 < w.size(); ++i) {
      auto it = rank_of.find(w[i] + '\0' + w[i + 1]);
      if (it != rank_of.end() && (best < 0 || it->second < best)) best = it->second, at = i;
    }
    if (best < 0) break;
    const std::string a = w[at], b = w[at + 1];
    std::vector<std::string> out;
    for (size_t i = 0; i < w.size();) {
      if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) out.push_back(a + b), i += 2;
      else out.push_back(w[i++]);
    }
    w.swap(out);
  }
  std::vector<int32_t> ids;
  for (const auto& s : w) ids.push_back(id_of.at(s));
  return ids;
}

// A vocabulary whose merges make the heap's order matter: pairs that a merge creates can have
// a lower rank than pairs still waiting (GPT-2 looks at them only after the whole pass).
struct Tiny {
  BpeTokenizer tok;
  std::unordered_map<std::string, int32_t> id_of;
  std::unordered_map<std::string, int> rank_of;
};

Tiny adversarial_tiny() {
  // The 256 byte tokens as \u escapes of GPT-2's byte alphabet, then the merged tokens (whose
  // letters a, b, c are their own symbols).
  std::string json = "{";
  for (int b = 0; b < 256; ++b)
    json += "\"\\u" + fmt::format("{:04x}", byte_code_point(b)) + "\": " + std::to_string(b) + ", ";
  // Merges by rank. "cc c" (1) is born when "c c" (6) merges, while other "c c" pairs of the
  // same pass still wait: GPT-2 finishes the pass first ("cccc" -> cc cc, not ccc c).
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"b", "c"},  {"cc", "c"}, {"a", "a"},    {"a", "bc"}, {"aa", "a"},
      {"abc", "a"}, {"c", "c"}, {"aaa", "bc"}, {"cc", "b"}};
  std::unordered_map<std::string, int32_t> id_of;
  for (int b = 0; b < 256; ++b) id_of[std::string(1, static_cast<char>(b))] = b;
  int next = 256;
  std::string bpe = "#version: 0.2\n";
  std::unordered_map<std::string, int> rank_of;
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string m = merges[r].first + merges[r].second;
    if (!id_of.count(m)) {
      id_of[m] = next;
      json += "\"" + m + "\": " + std::to_string(next++) + ", ";
    }
    bpe += merges[r].first + " " + merges[r].second + "\n";
    rank_of[merges[r].first + '\0' + merges[r].second] = static_cast<int>(r);
  }
  json += "\"<|endoftext|>\": " + std::to_string(next) + "}";
  return Tiny{BpeTokenizer::from_strings(json, bpe, "adversarial"), id_of, rank_of};
}

TEST(BpeTokenizerBounds, HeapBpeEqualsGpt2LoopOnAdversarialVocabulary) {
  const Tiny t = adversarial_tiny();
  std::mt19937 rng(7);
  for (int n = 2; n <= 40; ++n)
    for (int k = 0; k < 200; ++k) {
      std::string w;
      for (int i = 0; i < n; ++i) w.push_back("abc"[rng() % 3]);
      ASSERT_EQ(t.tok.encode(w), reference_bpe(w, t.id_of, t.rank_of)) << "word " << w;
    }
  EXPECT_EQ(t.tok.encode("cccc"), (std::vector<int32_t>{t.id_of.at("cc"), t.id_of.at("cc")}));
}

TEST(BpeTokenizerBounds, HeapBpeEqualsGpt2LoopOnRealVocabulary) {
  SKIP_WITHOUT_GPT2();
  // The real merges in bytes (vocab.bpe's symbols through the inverse of bytes_to_unicode),
  // ranked by line, and every token's id by its bytes.
  std::vector<int> to_byte(324, -1);
  for (int b = 0; b < 256; ++b) to_byte[byte_code_point(b)] = b;
  auto symbols_to_bytes = [&](const std::string& sym) {
    std::string out;
    for (size_t i = 0; i < sym.size();) {
      const auto c = static_cast<unsigned char>(sym[i]);
      int cp = c;
      if (c >= 0x80) cp = ((c & 0x1F) << 6) | (static_cast<unsigned char>(sym[i + 1]) & 0x3F), ++i;
      ++i;
      out.push_back(static_cast<char>(to_byte.at(cp)));
    }
    return out;
  };
  std::unordered_map<std::string, int> rank_of;
  std::ifstream in(kGpt2Dir + "/vocab.bpe");
  std::string line;
  int rank = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    const std::string key = symbols_to_bytes(line.substr(0, sp)) + '\0' + symbols_to_bytes(line.substr(sp + 1));
    rank_of[key] = rank++;  // later duplicates win, as in GPT-2's dict()
  }
  ASSERT_EQ(rank, gpt2().num_merges());
  std::unordered_map<std::string, int32_t> id_of;
  for (int id = 0; id < gpt2().vocab_size(); ++id)
    if (id != gpt2().eot_id()) id_of[gpt2().token_bytes(id)] = id;
  // Random words over frequent letters (many merges apply) and over all letters, with and
  // without GPT-2's leading space, and runs of one letter.
  std::mt19937 rng(11);
  const std::string letters = "etaoinshrdlucmfwypvbgkjqxz";
  for (int k = 0; k < 400; ++k) {
    std::string w = k % 2 ? " " : "";
    const int n = 2 + static_cast<int>(rng() % 40);
    const size_t alphabet = k % 3 == 0 ? letters.size() : k % 3 == 1 ? 6 : 1;
    for (int i = 0; i < n; ++i) w.push_back(letters[rng() % alphabet]);
    ASSERT_EQ(gpt2().encode(w), reference_bpe(w, id_of, rank_of)) << "word '" << w << "'";
  }
}

TEST(BpeTokenizerBounds, OneLongWordCostsBoundedWork) {
  SKIP_WITHOUT_GPT2();
  // 1 MB of one run of letters: GPT-2's loop is quadratic in it (the outside test saw 111 s).
  std::mt19937 rng(3);
  std::string word;
  for (int i = 0; i < (1 << 20); ++i) word.push_back(static_cast<char>('a' + rng() % 26));
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = gpt2().encode(word);
  const double s = seconds_since(t0);
  std::printf("one 1 MB word: %zu tokens in %.3f s\n", ids.size(), s);
  EXPECT_EQ(gpt2().decode(ids), word);
  EXPECT_LT(s, 10.0) << "a 1 MB word took " << s << " s";
}

TEST(BpeTokenizerBounds, EncodeBoundedRefusesWhatCannotFitBeforeTokenizing) {
  SKIP_WITHOUT_GPT2();
  const BpeTokenizer& t = gpt2();
  ASSERT_GE(t.max_token_bytes(), 2u);
  std::vector<int32_t> out;
  // Fits: the same ids as encode().
  const std::string text = "The jury said it did find that many of the city's problems";
  ASSERT_TRUE(t.encode_bounded(text, 1000, out));
  EXPECT_EQ(out, t.encode(text));
  const size_t n = out.size();
  EXPECT_TRUE(t.encode_bounded(text, n, out));
  EXPECT_FALSE(t.encode_bounded(text, n - 1, out));
  EXPECT_TRUE(out.empty());
  // 10 MB of text and a 1 MB single word against a 1023-token context: refused at once.
  const std::string big(10u << 20, 'x');
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(t.encode_bounded(big, 1023, out));
  std::string word;
  std::mt19937 rng(5);
  for (int i = 0; i < (1 << 20); ++i) word.push_back(static_cast<char>('a' + rng() % 26));
  EXPECT_FALSE(t.encode_bounded(word, 1023, out));
  // Many short words: stops at the first piece past the limit, not at the end of the text.
  std::string words;
  while (words.size() < (4u << 20)) words += " the";
  EXPECT_FALSE(t.encode_bounded(words, 1023, out));
  const double s = seconds_since(t0);
  EXPECT_LT(s, 1.0) << "refusing three over-long texts took " << s << " s";
  // A word just within the byte bound but over the token bound is refused before its BPE.
  const std::string edge = word.substr(0, 1023 * t.max_token_bytes());
  EXPECT_FALSE(t.encode_bounded(edge, 1023, out));
}

TEST(BpeTokenizerBounds, WordCacheStaysWithinItsByteBound) {
  SKIP_WITHOUT_GPT2();
  const BpeTokenizer t = BpeTokenizer::load(kGpt2Dir);  // a cache of its own
  std::mt19937 rng(9);
  // 12 MB of unique words of 8..128 letters (all cacheable), then of 129..4096 (none are).
  size_t total = 0;
  std::string text;
  while (total < (12u << 20)) {
    text.clear();
    while (text.size() < (1u << 20)) {
      text.push_back(' ');
      const int n = 8 + static_cast<int>(rng() % 121);
      for (int i = 0; i < n; ++i) text.push_back(static_cast<char>('a' + rng() % 26));
    }
    total += text.size();
    EXPECT_EQ(t.decode(t.encode(text)), text);
    EXPECT_LE(t.cache_bytes(), size_t{8} << 20);
  }
  const size_t after_short = t.cache_bytes();
  EXPECT_GT(after_short, 0u);
  text.clear();
  while (text.size() < (8u << 20)) {
    text.push_back(' ');
    const int n = 129 + static_cast<int>(rng() % 3968);
    for (int i = 0; i < n; ++i) text.push_back(static_cast<char>('a' + rng() % 26));
  }
  EXPECT_EQ(t.decode(t.encode(text)), text);
  EXPECT_EQ(t.cache_bytes(), after_short) << "a word over 128 bytes was cached";
}

}  // namespace
}  // namespace tandem
