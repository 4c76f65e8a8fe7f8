// TextStream: turns a request's generated token ids into the text pieces sent to the client,
// honouring stop sequences and UTF-8 boundaries.
//
// Contract: push(id) appends the token's bytes (GPT-2 byte-level BPE) and returns the text
// that is now safe to send: never a partial UTF-8 character, and never bytes that could be
// the start of a stop sequence (those are held back until they cannot be). When a stop
// sequence appears, push() returns the text before it, sets *stopped, and the stop text
// itself is never returned. flush() returns what is still held once the request ends for
// another reason (an incomplete UTF-8 tail included). The tokenizer must outlive the stream.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/data/bpe_tokenizer.h"

namespace tandem::serve {

class TextStream {
 public:
  TextStream(const BpeTokenizer& tok, std::vector<std::string> stops);
  std::string push(int32_t id, bool* stopped);
  std::string flush();

 private:
  const BpeTokenizer& tok_;
  std::vector<std::string> stops_;
  size_t max_stop_ = 0;
  std::string held_;  // bytes not yet returned
};

// Bytes at the end of s that form an incomplete UTF-8 character (0..3).
size_t incomplete_utf8_tail(const std::string& s);

}  // namespace tandem::serve
