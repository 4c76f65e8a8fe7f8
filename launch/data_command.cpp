// `tandem data prepare|version` (contract in data_command.h).
#include "launch/data_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/data/bpe_tokenizer.h"
#include "runtime/data/brown_corpus.h"
#include "runtime/data/token_shard.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPrepareUsage =
    "usage: tandem data prepare --tokenizer DIR --input PATH --out DIR [--format brown|text]\n"
    "                           [--val-fraction 0.05] [--shard-tokens N]\n"
    "       tandem data version\n";

struct Document {
  std::string name;
  std::string text;
};

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("cannot read --input '{}': {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("error reading --input '{}'", path));
  return ss.str();
}

bool is_shard_name(const std::string& name) {
  for (const char* prefix : {"train_", "val_"}) {
    const size_t n = std::strlen(prefix);
    if (name.size() > n + 4 && name.compare(0, n, prefix) == 0 &&
        name.compare(name.size() - 4, 4, ".bin") == 0 &&
        std::all_of(name.begin() + static_cast<std::ptrdiff_t>(n), name.end() - 4,
                    [](char c) { return c >= '0' && c <= '9'; }))
      return true;
  }
  return false;
}

// Writes `tokens` as OUT/<split>_000.bin, ... of at most shard_tokens each; returns the count.
int write_split(const std::string& out, const std::string& split, const std::vector<int32_t>& tokens,
                int64_t shard_tokens, int vocab_size) {
  int shards = 0;
  size_t pos = 0;
  do {
    const size_t n = std::min(tokens.size() - pos, static_cast<size_t>(shard_tokens));
    const std::string path = (fs::path(out) / fmt::format("{}_{:03d}.bin", split, shards)).string();
    write_token_shard(path, std::span<const int32_t>(tokens.data() + pos, n), vocab_size);
    pos += n;
    ++shards;
  } while (pos < tokens.size());
  return shards;
}

std::string need(const std::string& value, const char* flag) {
  if (value.empty())
    throw ConfigError(fmt::format("tandem data prepare: missing {} (see `tandem data prepare "
                                  "--help`)", flag));
  return value;
}

}  // namespace

PrepareResult prepare_data(const PrepareOptions& opts) {
  const std::string tok_dir = need(opts.tokenizer, "--tokenizer DIR");
  const std::string input = need(opts.input, "--input PATH");
  const std::string out = need(opts.out, "--out DIR");
  if (!(opts.val_fraction > 0.0 && opts.val_fraction < 1.0))
    throw ConfigError(fmt::format("--val-fraction must be in (0, 1), got {}", opts.val_fraction));
  if (opts.shard_tokens <= 0)
    throw ConfigError(fmt::format("--shard-tokens must be positive, got {}", opts.shard_tokens));
  std::error_code ec;
  if (!fs::exists(input, ec))
    throw ConfigError(fmt::format("--input '{}' does not exist", input));
  std::string format = opts.format;
  if (format.empty()) format = fs::is_directory(input, ec) ? "brown" : "text";
  if (format != "brown" && format != "text")
    throw ConfigError(fmt::format("--format must be brown or text, got '{}'", format));

  const BpeTokenizer tok = BpeTokenizer::load(tok_dir);

  std::vector<Document> docs;
  if (format == "brown") {
    for (auto& d : read_brown_corpus(input)) docs.push_back({std::move(d.name), std::move(d.text)});
  } else {
    if (fs::is_directory(input, ec))
      throw ConfigError(fmt::format("--format text needs a file, but --input '{}' is a directory",
                                    input));
    docs.push_back({fs::path(input).filename().string(), read_text_file(input)});
  }

  PrepareResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> doc_tokens(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    tok.encode_into(docs[i].text, doc_tokens[i]);
    doc_tokens[i].push_back(tok.eot_id());
    r.text_bytes += static_cast<int64_t>(docs[i].text.size());
  }
  r.tokenize_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Split: val_fraction of the documents, spread evenly over the sorted list so every genre
  // of the corpus is represented (at least one each side); a single document splits by tokens.
  const size_t n = docs.size();
  r.documents = static_cast<int>(n);
  std::vector<int32_t> train, val;
  if (n == 1) {
    const auto& all = doc_tokens[0];
    const auto nval = std::max<size_t>(
        1, static_cast<size_t>(std::llround(opts.val_fraction * static_cast<double>(all.size()))));
    if (all.size() < 2)
      throw ConfigError(fmt::format("--input '{}' is too short to split: {} tokens", input,
                                    all.size()));
    train.assign(all.begin(), all.end() - static_cast<std::ptrdiff_t>(nval));
    val.assign(all.end() - static_cast<std::ptrdiff_t>(nval), all.end());
    r.train_docs = r.val_docs = 1;
  } else {
    size_t nval = std::max<size_t>(
        1, static_cast<size_t>(std::llround(opts.val_fraction * static_cast<double>(n))));
    nval = std::min(nval, n - 1);
    for (size_t i = 0; i < n; ++i) {
      const bool to_val = (i + 1) * nval / n > i * nval / n;  // exactly nval, evenly spaced
      auto& dst = to_val ? val : train;
      dst.insert(dst.end(), doc_tokens[i].begin(), doc_tokens[i].end());
    }
    r.train_docs = static_cast<int>(n - nval);
    r.val_docs = static_cast<int>(nval);
  }
  r.train_tokens = static_cast<int64_t>(train.size());
  r.val_tokens = static_cast<int64_t>(val.size());

  fs::create_directories(out, ec);
  if (ec) throw Error(fmt::format("cannot create --out '{}': {}", out, ec.message()));
  for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_shard_name(name)) fs::remove(it->path());
  }
  r.train_shards = write_split(out, "train", train, opts.shard_tokens, tok.vocab_size());
  r.val_shards = write_split(out, "val", val, opts.shard_tokens, tok.vocab_size());

  const std::string plain_path = (fs::path(out) / "plain.txt").string();
  std::ofstream plain(plain_path, std::ios::binary);
  if (!plain) throw Error(fmt::format("cannot write '{}': {}", plain_path, std::strerror(errno)));
  for (size_t i = 0; i < n; ++i) {
    plain << docs[i].text;
    if (!docs[i].text.empty() && docs[i].text.back() != '\n') plain << '\n';
    plain << "<|endoftext|>\n";
  }
  plain.close();
  if (!plain) throw Error(fmt::format("error writing '{}'", plain_path));
  return r;
}

int data_command(int argc, char** argv) {
  const std::string sub = argc > 0 ? argv[0] : "";
  if (sub == "version") {
    std::printf("%s\n", kDataPrepareVersion);
    return 0;
  }
  if (sub == "--help" || sub == "-h" || sub.empty()) {
    std::printf("%s", kPrepareUsage);
    return sub.empty() ? 2 : 0;
  }
  if (sub != "prepare")
    throw ConfigError(fmt::format("unknown `tandem data` subcommand '{}'\n{}", sub, kPrepareUsage));

  PrepareOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", kPrepareUsage);
      return 0;
    }
    if (const size_t eq = flag.find('='); flag.starts_with("--") && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else {
      if (i + 1 >= argc)
        throw ConfigError(fmt::format("tandem data prepare: {} needs a value\n{}", flag, kPrepareUsage));
      value = argv[++i];
    }
    try {
      if (flag == "--tokenizer") o.tokenizer = value;
      else if (flag == "--input") o.input = value;
      else if (flag == "--out") o.out = value;
      else if (flag == "--format") o.format = value;
      else if (flag == "--val-fraction") o.val_fraction = std::stod(value);
      else if (flag == "--shard-tokens") o.shard_tokens = std::stoll(value);
      else throw ConfigError(fmt::format("tandem data prepare: unknown option '{}'\n{}", flag, kPrepareUsage));
    } catch (const std::logic_error&) {  // stod / stoll
      throw ConfigError(fmt::format("tandem data prepare: {} expects a number, got '{}'", flag, value));
    }
  }

  const PrepareResult r = prepare_data(o);
  const double mb = static_cast<double>(r.text_bytes) / 1e6;
  const int64_t total = r.train_tokens + r.val_tokens;
  std::printf("data prepare: %d document(s), %.2f MB of text -> %lld tokens\n",
              r.documents, mb,
              static_cast<long long>(total));
  std::printf("  tokenized in %.2f s (%.1f MB/s, %.2f M tokens/s, one core)\n", r.tokenize_seconds,
              mb / std::max(r.tokenize_seconds, 1e-9),
              static_cast<double>(total) / 1e6 / std::max(r.tokenize_seconds, 1e-9));
  std::printf("  train: %lld tokens, %d document(s), %d shard(s) -> %s/train_*.bin\n",
              static_cast<long long>(r.train_tokens), r.train_docs, r.train_shards, o.out.c_str());
  std::printf("  val:   %lld tokens, %d document(s), %d shard(s) -> %s/val_*.bin\n",
              static_cast<long long>(r.val_tokens), r.val_docs, r.val_shards, o.out.c_str());
  std::printf("  text:  %s/plain.txt\n", o.out.c_str());
  return 0;
}

}  // namespace tandem
