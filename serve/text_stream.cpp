// Stop-sequence and UTF-8 aware detokenization (contract in text_stream.h).
#include "serve/text_stream.h"

#include <algorithm>

namespace tandem::serve {

size_t incomplete_utf8_tail(const std::string& s) {
  // Walk back over at most 3 continuation bytes to the lead byte and compare its length.
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t need = 1;
    if ((c & 0xE0) == 0xC0) need = 2;
    else if ((c & 0xF0) == 0xE0) need = 3;
    else if ((c & 0xF8) == 0xF0) need = 4;
    return need > back ? back : 0;
  }
  return 0;  // only continuation bytes (invalid UTF-8): nothing to wait for
}

TextStream::TextStream(const BpeTokenizer& tok, std::vector<std::string> stops)
    : tok_(tok), stops_(std::move(stops)) {
  for (const std::string& s : stops_) max_stop_ = std::max(max_stop_, s.size());
}

std::string TextStream::push(int32_t id, bool* stopped) {
  *stopped = false;
  held_ += tok_.token_bytes(id);
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  // Hold the longest suffix that is a proper prefix of some stop sequence.
  size_t hold = 0;
  for (const std::string& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > hold; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  size_t ready = held_.size() - hold;
  ready -= incomplete_utf8_tail(held_.substr(0, ready));
  std::string out = held_.substr(0, ready);
  held_.erase(0, ready);
  return out;
}

std::string TextStream::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace tandem::serve
