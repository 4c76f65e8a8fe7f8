// GPT-2 byte-level BPE tokenizer (encoder.json + vocab.bpe), written out by hand.
//
// Contract: load(dir) reads dir/encoder.json (a JSON object token -> id, parsed here, \uXXXX
// escapes included) and dir/vocab.bpe (the merges, in rank order) and throws tandem::Error
// naming the file on anything malformed. encode() reproduces GPT-2's encoder exactly:
//   1. pre-tokenization by the GPT-2 pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      implemented by hand over UTF-8 code points. \p{L} and \p{N} come from range tables
//      generated from Unicode 17 (exact for ASCII and Latin-1; for other scripts they may
//      differ from the Unicode version of Python's `regex` module that GPT-2 used only in
//      characters assigned since). \s is the Unicode White_Space property, as in `regex`
//      (so U+0085 is a space and U+FEFF is not; JavaScript's \s differs on those two).
//      Bytes that are not valid UTF-8 are each treated as one non-letter, non-number char.
//   2. each piece's bytes -> GPT-2's bytes_to_unicode symbols -> BPE merges by rank
//      (lowest rank first, all occurrences left to right) in O(n log n) for a word of n bytes,
//      memoised in a word cache bounded in bytes (8 MB; words over 128 bytes are not kept).
// encode_bounded() is encode() for untrusted text: it stops, returning false, as soon as the
// text cannot fit in max_tokens (a text longer than max_tokens * max_token_bytes() bytes is
// refused before any work; a word is refused before its BPE when it alone needs more tokens
// than are left), so its work is linear in min(text, max_tokens * max_token_bytes()) bytes.
// "<|endoftext|>" in the text is encoded as ordinary text (as GPT-2 does); use eot_id() to
// insert the separator. decode() returns the raw bytes (no UTF-8 repair), so
// decode(encode(s)) == s for every byte string s. Thread-safe: the cache has a lock.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tandem {

class BpeTokenizer {
 public:
  // Reads dir/encoder.json and dir/vocab.bpe.
  static BpeTokenizer load(const std::string& dir);
  // Builds from the two files' contents; `where` names them in error messages.
  static BpeTokenizer from_strings(std::string_view encoder_json, std::string_view vocab_bpe,
                                   const std::string& where);

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  std::vector<int32_t> encode(std::string_view utf8) const;
  // Appends the ids of `utf8` to `out` (no intermediate vector for long texts).
  void encode_into(std::string_view utf8, std::vector<int32_t>& out) const;
  // out = encode(utf8) when it has at most max_tokens ids (returns true); else returns false
  // with `out` empty, having stopped early (see above).
  bool encode_bounded(std::string_view utf8, size_t max_tokens, std::vector<int32_t>& out) const;
  std::string decode(std::span<const int32_t> ids) const;
  // The bytes of one token (throws on an id outside [0, vocab_size)).
  const std::string& token_bytes(int32_t id) const;

  int vocab_size() const { return static_cast<int>(id_bytes_.size()); }
  int eot_id() const { return eot_id_; }
  int num_merges() const { return num_merges_; }
  // The longest token's bytes (<|endoftext|> aside, which encode() never produces).
  size_t max_token_bytes() const { return max_token_bytes_; }
  // Bytes the word cache holds now (its bound's measure; exposed for tests).
  size_t cache_bytes() const;

  // Splits `utf8` into the GPT-2 pre-tokenization pieces (exposed for tests).
  static std::vector<std::string_view> pretokenize(std::string_view utf8);

 private:
  struct Cache;
  BpeTokenizer();
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;  // cached
  void bpe_word(std::string_view piece, std::vector<int32_t>& out) const;   // computed

  std::vector<std::string> id_bytes_;                 // id -> raw bytes
  int32_t byte_id_[256] = {};                         // single byte -> id
  std::unordered_map<uint64_t, uint64_t> merges_;     // (left<<32|right) -> (rank<<32|merged)
  int eot_id_ = -1;
  int num_merges_ = 0;
  size_t max_token_bytes_ = 1;
  std::unique_ptr<Cache> cache_;
};

}  // namespace tandem
