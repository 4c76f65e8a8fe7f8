// Config loading: YAML text + `--set` overrides -> RunConfig, driven by one schema table.
//
// Contract (see config.h and docs/config.md): the table `schema()` lists every key once with
// its field (a pointer-returning accessor into RunConfig), its numeric range or its choices.
// Parsing, range checks, error messages, describe_config and config_to_yaml all read that table,
// so a new key is one line here plus one line in docs/config.md. Every error is a ConfigError
// "WHERE: MESSAGE", WHERE being "file:LINE" (1-based) or "--set key=value".
// A path is "section.key" or, for a key inside a group, "section.group.key" (train.checkpoint.dir);
// in YAML a group is a nested mapping under the section, on the command line the dotted path.
#include "launch/config.h"

#include "parallel/pipeline_schedule.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <variant>

#include "runtime/core/error.h"

namespace tandem {
namespace {

// ------------------------------------------------------------------ schema

struct Range {
  bool has_lo = false, lo_open = false, has_hi = false, hi_open = false;
  double lo = 0, hi = 0;
};
Range at_least(double v) { Range r; r.has_lo = true; r.lo = v; return r; }
Range above(double v) { Range r = at_least(v); r.lo_open = true; return r; }
Range closed(double a, double b) { Range r = at_least(a); r.has_hi = true; r.hi = b; return r; }
Range half_open(double a, double b) { Range r = closed(a, b); r.hi_open = true; return r; }

using IntRef = int& (*)(RunConfig&);
using U64Ref = uint64_t& (*)(RunConfig&);
using FloatRef = float& (*)(RunConfig&);
using DoubleRef = double& (*)(RunConfig&);
using BoolRef = bool& (*)(RunConfig&);
using StringRef = std::string& (*)(RunConfig&);
using RecomputeRef = Recompute& (*)(RunConfig&);
using Field = std::variant<IntRef, U64Ref, FloatRef, DoubleRef, BoolRef, StringRef, RecomputeRef>;

struct KeySpec {
  std::string_view path;                      // "section.key" or "section.group.key"
  Field field;
  Range range = {};                           // numeric keys
  std::vector<std::string_view> choices = {};  // string and enum keys ("one of ...")
  bool (*check)(const std::string&) = nullptr;  // extra validation of a string key
  std::string_view check_expect = {};          // what `check` expects, for the message
  bool allow_empty = false;                    // string keys: "" is a valid value (else refused)

  std::string_view section() const { return path.substr(0, path.find('.')); }
  // The path below the section: "lr", "checkpoint.dir".
  std::string_view leaf() const { return path.substr(path.find('.') + 1); }
};

// A captureless accessor `RunConfig& -> member&`, converted to a plain function pointer.
#define TANDEM_FIELD(member) +[](RunConfig& c) -> auto& { return c.member; }

// "tp-dp-pp" and its permutations.
bool is_mesh_order(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, '-');) parts.push_back(p);
  if (!s.empty() && s.back() == '-') parts.push_back("");
  std::sort(parts.begin(), parts.end());
  return parts == std::vector<std::string>{"dp", "pp", "tp"};
}

const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> keys = {
      {.path = "model.layers", .field = TANDEM_FIELD(model.layers), .range = at_least(1)},
      {.path = "model.dim", .field = TANDEM_FIELD(model.dim), .range = at_least(1)},
      {.path = "model.heads", .field = TANDEM_FIELD(model.heads), .range = at_least(1)},
      {.path = "model.vocab", .field = TANDEM_FIELD(model.vocab), .range = closed(2, 65535)},
      {.path = "model.seq_len", .field = TANDEM_FIELD(model.seq_len), .range = at_least(1)},

      {.path = "train.steps", .field = TANDEM_FIELD(train.steps), .range = at_least(1)},
      {.path = "train.batch", .field = TANDEM_FIELD(train.batch), .range = at_least(1)},
      {.path = "train.lr", .field = TANDEM_FIELD(train.lr), .range = above(0)},
      {.path = "train.warmup", .field = TANDEM_FIELD(train.warmup), .range = at_least(0)},
      {.path = "train.min_lr_ratio", .field = TANDEM_FIELD(train.min_lr_ratio),
       .range = closed(0, 1)},
      {.path = "train.weight_decay", .field = TANDEM_FIELD(train.weight_decay),
       .range = at_least(0)},
      {.path = "train.grad_clip", .field = TANDEM_FIELD(train.grad_clip), .range = at_least(0)},
      {.path = "train.beta1", .field = TANDEM_FIELD(train.beta1), .range = half_open(0, 1)},
      {.path = "train.beta2", .field = TANDEM_FIELD(train.beta2), .range = half_open(0, 1)},
      {.path = "train.eps", .field = TANDEM_FIELD(train.eps), .range = above(0)},
      {.path = "train.seed", .field = TANDEM_FIELD(train.seed)},
      {.path = "train.eval_every", .field = TANDEM_FIELD(train.eval_every), .range = at_least(0)},
      {.path = "train.eval_batches", .field = TANDEM_FIELD(train.eval_batches),
       .range = at_least(1)},
      {.path = "train.device", .field = TANDEM_FIELD(train.device),
       .choices = {"cpu", "cuda", "auto"}},
      {.path = "train.precision", .field = TANDEM_FIELD(train.precision),
       .choices = {"fp32", "bf16"}},
      {.path = "train.threads", .field = TANDEM_FIELD(train.threads), .range = at_least(0)},
      {.path = "train.stop_after", .field = TANDEM_FIELD(train.stop_after), .range = at_least(0)},
      // The keys of a group stay contiguous (config_to_yaml writes one nested mapping per group).
      {.path = "train.checkpoint.dir", .field = TANDEM_FIELD(train.checkpoint.dir),
       .allow_empty = true},
      {.path = "train.checkpoint.every", .field = TANDEM_FIELD(train.checkpoint.every),
       .range = at_least(0)},
      {.path = "train.checkpoint.keep_last", .field = TANDEM_FIELD(train.checkpoint.keep_last),
       .range = at_least(0)},

      {.path = "data.train", .field = TANDEM_FIELD(data.train)},
      {.path = "data.val", .field = TANDEM_FIELD(data.val)},
      {.path = "data.tokenizer", .field = TANDEM_FIELD(data.tokenizer)},

      {.path = "parallel.dp", .field = TANDEM_FIELD(parallel.dp), .range = at_least(1)},
      {.path = "parallel.tp", .field = TANDEM_FIELD(parallel.tp), .range = at_least(1)},
      {.path = "parallel.pp", .field = TANDEM_FIELD(parallel.pp), .range = at_least(1)},
      {.path = "parallel.microbatches", .field = TANDEM_FIELD(parallel.microbatches),
       .range = at_least(1)},
      {.path = "parallel.recompute", .field = TANDEM_FIELD(parallel.recompute),
       .choices = {"none", "selective", "full"}},
      {.path = "parallel.zero", .field = TANDEM_FIELD(parallel.zero), .range = closed(0, 1)},
      {.path = "parallel.offload", .field = TANDEM_FIELD(parallel.offload)},
      {.path = "parallel.order", .field = TANDEM_FIELD(parallel.order), .check = is_mesh_order,
       .check_expect = "a permutation of tp, dp, pp joined by '-' (e.g. \"tp-dp-pp\")"},
      {.path = "parallel.schedule", .field = TANDEM_FIELD(parallel.schedule),
       .choices = {"gpipe", "1f1b", "interleaved"}},
      {.path = "parallel.chunks", .field = TANDEM_FIELD(parallel.chunks), .range = at_least(1)},
      {.path = "parallel.bucket_mb", .field = TANDEM_FIELD(parallel.bucket_mb), .range = at_least(1)},
      {.path = "parallel.timeout_s", .field = TANDEM_FIELD(parallel.timeout_s),
       .range = above(0)},
      {.path = "parallel.device_comm", .field = TANDEM_FIELD(parallel.device_comm),
       .choices = {"auto", "nccl", "staged"}},

      {.path = "sample.prompt", .field = TANDEM_FIELD(sample.prompt)},
      {.path = "sample.count", .field = TANDEM_FIELD(sample.count), .range = at_least(0)},
      {.path = "sample.tokens", .field = TANDEM_FIELD(sample.tokens), .range = at_least(1)},
      {.path = "sample.temperature", .field = TANDEM_FIELD(sample.temperature),
       .range = at_least(0)},
      {.path = "sample.top_k", .field = TANDEM_FIELD(sample.top_k), .range = at_least(0)},

      {.path = "serve.mode", .field = TANDEM_FIELD(serve.mode),
       .choices = {"off", "windows", "dedicated"}},
      {.path = "serve.ranks", .field = TANDEM_FIELD(serve.ranks), .range = at_least(0)},
      {.path = "serve.tp", .field = TANDEM_FIELD(serve.tp), .range = at_least(1)},
      {.path = "serve.pp", .field = TANDEM_FIELD(serve.pp), .range = at_least(1)},
      {.path = "serve.sync_every", .field = TANDEM_FIELD(serve.sync_every), .range = at_least(1)},
      {.path = "serve.max_wait_ms", .field = TANDEM_FIELD(serve.max_wait_ms), .range = above(0)},
      {.path = "serve.max_window_ms", .field = TANDEM_FIELD(serve.max_window_ms), .range = at_least(0)},
      {.path = "serve.batch_budget", .field = TANDEM_FIELD(serve.batch_budget), .range = closed(0, 1)},
      {.path = "serve.window_points", .field = TANDEM_FIELD(serve.window_points), .choices = {"all", "steps"}},
      {.path = "serve.listen", .field = TANDEM_FIELD(serve.listen)},
      {.path = "serve.metrics_listen", .field = TANDEM_FIELD(serve.metrics_listen),
       .allow_empty = true},
      {.path = "serve.replica_listen", .field = TANDEM_FIELD(serve.replica_listen)},
      {.path = "serve.name", .field = TANDEM_FIELD(serve.name), .allow_empty = true},
      {.path = "serve.kv_blocks", .field = TANDEM_FIELD(serve.kv_blocks), .range = at_least(1)},
      {.path = "serve.kv_block_tokens", .field = TANDEM_FIELD(serve.kv_block_tokens),
       .range = closed(1, 1024)},
      {.path = "serve.max_seqs", .field = TANDEM_FIELD(serve.max_seqs), .range = closed(1, 1024)},
      {.path = "serve.max_batch_tokens", .field = TANDEM_FIELD(serve.max_batch_tokens),
       .range = at_least(1)},
      {.path = "serve.prefill_chunk", .field = TANDEM_FIELD(serve.prefill_chunk),
       .range = at_least(1)},
      {.path = "serve.queue_realtime", .field = TANDEM_FIELD(serve.queue_realtime),
       .range = at_least(0)},
      {.path = "serve.queue_batch", .field = TANDEM_FIELD(serve.queue_batch),
       .range = at_least(0)},
      {.path = "serve.recompute", .field = TANDEM_FIELD(serve.recompute)},
      {.path = "serve.stream_interval_ms", .field = TANDEM_FIELD(serve.stream_interval_ms),
       .range = closed(0, 1000)},
      {.path = "serve.idle_heartbeat_s", .field = TANDEM_FIELD(serve.idle_heartbeat_s),
       .range = closed(0.001, 1)},
      {.path = "serve.max_message_bytes", .field = TANDEM_FIELD(serve.max_message_bytes),
       .range = closed(0, 1 << 30)},
      {.path = "serve.max_connections", .field = TANDEM_FIELD(serve.max_connections),
       .range = closed(1, 65536)},
      {.path = "serve.idle_timeout_s", .field = TANDEM_FIELD(serve.idle_timeout_s),
       .range = closed(0, 86400)},
      {.path = "serve.sink_timeout_s", .field = TANDEM_FIELD(serve.sink_timeout_s),
       .range = closed(0.01, 3600)},
  };
  return keys;
}
#undef TANDEM_FIELD

std::vector<std::string> sections() {
  std::vector<std::string> out;
  for (const KeySpec& k : schema()) {
    std::string s(k.section());
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

bool is_section(const std::string& s) {
  auto all = sections();
  return std::find(all.begin(), all.end(), s) != all.end();
}

// Whether key `path` lies below `prefix`: "train.checkpoint.dir" is below "train.checkpoint".
bool is_below(std::string_view path, std::string_view prefix) {
  return path.size() > prefix.size() + 1 && path.substr(0, prefix.size()) == prefix &&
         path[prefix.size()] == '.';
}

// Whether `prefix` ("train", "train.checkpoint") has keys below it in the schema.
bool has_keys_below(std::string_view prefix) {
  for (const KeySpec& k : schema())
    if (is_below(k.path, prefix))
      return true;
  return false;
}

// A group: a mapping of keys inside a section ("train.checkpoint"), not a section itself.
bool is_group(const std::string& path) {
  return path.find('.') != std::string::npos && has_keys_below(path);
}

const KeySpec* find_key(std::string_view path) {
  for (const KeySpec& k : schema())
    if (k.path == path) return &k;
  return nullptr;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : "") + v[i];
  return out;
}

// ------------------------------------------------------------------ messages

[[noreturn]] void fail(const std::string& where, const std::string& msg) {
  throw ConfigError(fmt::format("{}: {}", where, msg));
}

std::string at(const std::string& source, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return source;
  return fmt::format("{}:{}", source, mark.line + 1);
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out + "\"";
}

bool looks_numeric(const std::string& s) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() &&
         s.find_first_not_of("0123456789+-.eE") == std::string::npos;
}

std::string got_text(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: return "nothing (null)";
    case YAML::NodeType::Scalar:
      if (n.Tag() != "!" && looks_numeric(n.Scalar())) return n.Scalar();
      return quote(n.Scalar());
    case YAML::NodeType::Sequence:
    case YAML::NodeType::Map: {
      YAML::Emitter e;
      e.SetSeqFormat(YAML::Flow);
      e.SetMapFormat(YAML::Flow);
      e << n;
      std::string text = e.c_str();
      if (text.size() > 60) text = text.substr(0, 57) + "...";
      return fmt::format("{} {}", n.IsMap() ? "a mapping" : "a list", text);
    }
  }
  return "?";
}

std::string num_text(double v) { return fmt::format("{}", v); }

std::string range_text(const Range& r) {
  if (r.has_lo && r.has_hi)
    return fmt::format(" in {}{}, {}{}", r.lo_open ? '(' : '[', num_text(r.lo), num_text(r.hi),
                       r.hi_open ? ')' : ']');
  if (r.has_lo) return fmt::format(" {} {}", r.lo_open ? ">" : ">=", num_text(r.lo));
  if (r.has_hi) return fmt::format(" {} {}", r.hi_open ? "<" : "<=", num_text(r.hi));
  return "";
}

std::string choices_text(const KeySpec& k) {
  std::vector<std::string> c(k.choices.begin(), k.choices.end());
  return "one of " + join(c, "|");
}

std::string expected_text(const KeySpec& k) {
  if (k.allow_empty) return "a string (\"\" for none)";
  if (std::holds_alternative<IntRef>(k.field)) return "an integer" + range_text(k.range);
  if (std::holds_alternative<U64Ref>(k.field)) return "an integer >= 0";
  if (std::holds_alternative<FloatRef>(k.field) || std::holds_alternative<DoubleRef>(k.field))
    return "a number" + range_text(k.range);
  if (std::holds_alternative<BoolRef>(k.field)) return "true or false";
  if (!k.choices.empty()) return choices_text(k);
  if (k.check) return std::string(k.check_expect);
  return "a non-empty string";
}

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// The candidate closest to `word`, if it is close enough to be a plausible typo.
std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  size_t limit = std::max<size_t>(1, word.size() / 3);
  return best_d <= limit && best_d < best.size() ? best : "";
}

// Every key path below `prefix`, relative to it: keys_of("train") = steps, ..., checkpoint.dir, ...
std::vector<std::string> keys_of(const std::string& prefix) {
  std::vector<std::string> out;
  for (const KeySpec& k : schema())
    if (is_below(k.path, prefix))
      out.emplace_back(k.path.substr(prefix.size() + 1));
  return out;
}

// The names one level below `prefix`, keys and groups: children("train") = steps, ..., checkpoint.
std::vector<std::string> children(const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& rest : keys_of(prefix)) {
    std::string name = rest.substr(0, rest.find('.'));
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

std::string last_part(std::string_view path) {
  size_t dot = path.rfind('.');
  return std::string(dot == std::string_view::npos ? path : path.substr(dot + 1));
}

std::string unknown_section_msg(const std::string& name) {
  std::string msg = fmt::format("unknown section '{}'", name);
  std::string guess = closest(name, sections());
  if (!guess.empty()) return msg + fmt::format(" (did you mean '{}'?)", guess);
  for (const KeySpec& k : schema())
    if (k.leaf() == name)
      return msg + fmt::format(" (did you mean '{}'? keys go under their section)", k.path);
  return msg + fmt::format(" (sections are {})", join(sections(), ", "));
}

std::string unknown_key_msg(const std::string& path) {
  std::string msg = fmt::format("unknown key '{}'", path);
  size_t dot = path.rfind('.');
  std::string parent = path.substr(0, dot);  // "train", "train.checkpoint"
  std::string leaf = dot == std::string::npos ? "" : path.substr(dot + 1);
  const bool known_parent = dot != std::string::npos && has_keys_below(parent);
  if (known_parent) {
    std::string guess = closest(leaf, children(parent));
    if (!guess.empty()) return msg + fmt::format(" (did you mean '{}.{}'?)", parent, guess);
  }
  for (const KeySpec& k : schema())
    if (!leaf.empty() && last_part(k.path) == leaf)
      return msg + fmt::format(" (did you mean '{}'?)", k.path);
  if (known_parent)  // (a whole-path match would only be the shared prefix)
    return msg + fmt::format(" ({} keys are {})", parent, join(keys_of(parent), ", "));
  std::vector<std::string> all = config_keys();
  std::string guess = closest(path, all);
  if (!guess.empty()) return msg + fmt::format(" (did you mean '{}'?)", guess);
  std::string section = path.substr(0, path.find('.'));
  if (is_section(section))
    return msg + fmt::format(" ({} keys are {})", section, join(keys_of(section), ", "));
  return msg + fmt::format(" (sections are {})", join(sections(), ", "));
}

// ------------------------------------------------------------------ values

enum class IntParse { Ok, NotInt, TooLarge };

IntParse parse_int(const std::string& s, long long* out) {
  size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  if (i == s.size() || s.find_first_not_of("0123456789", i) != std::string::npos)
    return IntParse::NotInt;
  errno = 0;
  *out = std::strtoll(s.c_str(), nullptr, 10);
  return errno == ERANGE ? IntParse::TooLarge : IntParse::Ok;
}

bool parse_number(const std::string& s, double* out) {
  if (!looks_numeric(s)) return false;
  *out = std::strtod(s.c_str(), nullptr);
  return std::isfinite(*out);
}

bool in_range(const Range& r, double v) {
  if (r.has_lo && (r.lo_open ? !(v > r.lo) : !(v >= r.lo))) return false;
  if (r.has_hi && (r.hi_open ? !(v < r.hi) : !(v <= r.hi))) return false;
  return true;
}

bool parse_bool(const std::string& s, bool* out) {
  static const char* const kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const char* const kFalse[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  for (const char* t : kTrue)
    if (s == t) return *out = true, true;
  for (const char* f : kFalse)
    if (s == f) return *out = false, true;
  return false;
}

// Validates `node` against `spec` and stores it into `cfg`; throws ConfigError at `where`.
void apply(RunConfig& cfg, const KeySpec& spec, const YAML::Node& node, const std::string& where) {
  auto bad = [&](const std::string& note = "") {
    fail(where, fmt::format("{}: expected {}, got {}{}", spec.path, expected_text(spec),
                            got_text(node), note));
  };
  if (!node.IsScalar()) bad();
  const std::string& s = node.Scalar();
  const bool quoted = node.Tag() == "!";  // "...": a string, whatever it looks like

  if (auto* f = std::get_if<IntRef>(&spec.field)) {
    long long v = 0;
    IntParse p = quoted ? IntParse::NotInt : parse_int(s, &v);
    if (p == IntParse::NotInt) bad();
    if (p == IntParse::TooLarge || v > INT_MAX || v < INT_MIN)
      bad(fmt::format(" (outside the 32-bit integer range)"));
    if (!in_range(spec.range, static_cast<double>(v))) bad();
    (*f)(cfg) = static_cast<int>(v);
  } else if (auto* f = std::get_if<U64Ref>(&spec.field)) {
    size_t i = (!s.empty() && s[0] == '+') ? 1 : 0;
    if (quoted || i == s.size() || s.find_first_not_of("0123456789", i) != std::string::npos)
      bad();
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (errno == ERANGE) bad(" (outside the 64-bit integer range)");
    (*f)(cfg) = static_cast<uint64_t>(v);
  } else if (auto* f = std::get_if<FloatRef>(&spec.field)) {
    double v = 0;
    if (quoted || !parse_number(s, &v)) bad();
    float fv = static_cast<float>(v);
    if (!std::isfinite(fv)) bad(" (outside the 32-bit float range)");
    if (!in_range(spec.range, fv)) bad();
    (*f)(cfg) = fv;
  } else if (auto* f = std::get_if<DoubleRef>(&spec.field)) {
    double v = 0;
    if (quoted || !parse_number(s, &v) || !in_range(spec.range, v)) bad();
    (*f)(cfg) = v;
  } else if (auto* f = std::get_if<BoolRef>(&spec.field)) {
    bool v = false;
    if (quoted || !parse_bool(s, &v)) bad();
    (*f)(cfg) = v;
  } else if (auto* f = std::get_if<RecomputeRef>(&spec.field)) {
    auto it = std::find(spec.choices.begin(), spec.choices.end(), s);
    if (it == spec.choices.end()) bad();
    (*f)(cfg) = static_cast<Recompute>(it - spec.choices.begin());
  } else if (auto* f = std::get_if<StringRef>(&spec.field)) {
    if (s.empty() && !spec.allow_empty) bad();
    if (!s.empty()) {
      if (!spec.choices.empty() &&
          std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end())
        bad();
      if (spec.check && !spec.check(s)) bad();
    }
    (*f)(cfg) = s;
  }
}

// The value of a key as YAML text (strings double-quoted), for config_to_yaml.
std::string yaml_value(const RunConfig& cfg_const, const KeySpec& spec) {
  RunConfig& cfg = const_cast<RunConfig&>(cfg_const);  // accessors only read here
  return std::visit(
      [&](auto f) -> std::string {
        const auto& v = f(cfg);
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
        else if constexpr (std::is_same_v<T, Recompute>) return recompute_name(v);
        else if constexpr (std::is_same_v<T, std::string>) return quote(v);
        else return fmt::format("{}", v);
      },
      spec.field);
}

// The value of a key for logs: strings quoted only where needed.
std::string log_value(const RunConfig& cfg, const KeySpec& spec) {
  std::string v = yaml_value(cfg, spec);
  if (std::holds_alternative<StringRef>(spec.field)) {
    std::string raw = v.substr(1, v.size() - 2);
    if (!raw.empty() && raw.find_first_of(" \t\n\"=\\") == std::string::npos) return raw;
  }
  return v;
}

// Where a key's current value came from: "file:LINE", "--set k=v" or "default".
std::string origin_of(const RunConfig& cfg, const std::string& key) {
  auto it = cfg.origins.find(key);
  return it == cfg.origins.end() ? "default" : it->second;
}

// The location to lead a cross-key message with: the first of `keys` set by an override (the
// user's latest change), else the first set in the file, else the file itself.
std::string lead(const RunConfig& cfg, std::initializer_list<const char*> keys) {
  for (bool want_override : {true, false})
    for (const char* k : keys) {
      auto it = cfg.origins.find(k);
      if (it != cfg.origins.end() && (!want_override || it->second.rfind("--set ", 0) == 0))
        return it->second;
    }
  return cfg.source;
}

void check_cross_keys(const RunConfig& cfg) {
  if (cfg.model.dim % cfg.model.heads != 0)
    fail(lead(cfg, {"model.dim", "model.heads"}),
         fmt::format("model.dim={} must be a multiple of model.heads={} "
                     "(model.dim: {}; model.heads: {})",
                     cfg.model.dim, cfg.model.heads, origin_of(cfg, "model.dim"),
                     origin_of(cfg, "model.heads")));
  const ServeOptions& sv = cfg.serve;
  if (sv.max_batch_tokens < sv.max_seqs)
    fail(lead(cfg, {"serve.max_batch_tokens", "serve.max_seqs"}),
         fmt::format("serve.max_batch_tokens={} must be >= serve.max_seqs={} (every running "
                     "sequence decodes one token per step; serve.max_batch_tokens: {}; "
                     "serve.max_seqs: {})",
                     sv.max_batch_tokens, sv.max_seqs, origin_of(cfg, "serve.max_batch_tokens"),
                     origin_of(cfg, "serve.max_seqs")));
  if (sv.replica_listen.find(':') != std::string::npos && sv.replica_listen != "::")
    fail(lead(cfg, {"serve.replica_listen"}),
         fmt::format("serve.replica_listen='{}' must be a host without a port (each replica's "
                     "server takes a free port; serve.replica_listen: {})",
                     sv.replica_listen, origin_of(cfg, "serve.replica_listen")));
  if (sv.mode == "dedicated" && sv.ranks < 1)
    fail(lead(cfg, {"serve.ranks", "serve.mode"}),
         fmt::format("serve.mode=dedicated needs serve.ranks >= 1 (the ranks set apart for serving; "
                     "got {}; serve.ranks: {})", sv.ranks, origin_of(cfg, "serve.ranks")));
  if (sv.mode != "dedicated" && sv.ranks != 0)
    fail(lead(cfg, {"serve.ranks", "serve.mode"}),
         fmt::format("serve.ranks={} sets ranks apart for serve.mode=dedicated, but serve.mode is {} "
                     "(serve.ranks: {}; serve.mode: {})", sv.ranks, sv.mode, origin_of(cfg, "serve.ranks"),
                     origin_of(cfg, "serve.mode")));
  if (sv.ranks > 0 && sv.ranks % (static_cast<long long>(sv.tp) * sv.pp) != 0)
    fail(lead(cfg, {"serve.ranks", "serve.tp", "serve.pp"}),
         fmt::format("serve.ranks={} is not a multiple of serve.tp * serve.pp = {} * {} (each serving "
                     "replica takes tp x pp ranks)", sv.ranks, sv.tp, sv.pp));
  if (sv.ranks > 0 && cfg.model.heads % sv.tp != 0)
    fail(lead(cfg, {"serve.tp", "model.heads"}),
         fmt::format("model.heads={} is not divisible by serve.tp={} (attention is split by heads)",
                     cfg.model.heads, sv.tp));
  if (sv.ranks > 0 && cfg.model.padded_vocab() % sv.tp != 0)
    fail(lead(cfg, {"serve.tp", "model.vocab"}),
         fmt::format("the padded vocabulary {} is not divisible by serve.tp={}", cfg.model.padded_vocab(), sv.tp));
  if (sv.ranks > 0 && cfg.model.layers < sv.pp)
    fail(lead(cfg, {"serve.pp", "model.layers"}),
         fmt::format("model.layers={} is fewer than serve.pp={} serving stages", cfg.model.layers, sv.pp));
  const TrainOptions& t = cfg.train;
  if (t.stop_after > t.steps)
    fail(lead(cfg, {"train.stop_after", "train.steps"}),
         fmt::format("train.stop_after={} must be <= train.steps={} (0 runs all steps; "
                     "train.stop_after: {}; train.steps: {})",
                     t.stop_after, t.steps, origin_of(cfg, "train.stop_after"),
                     origin_of(cfg, "train.steps")));
}

void apply_override(RunConfig& cfg, const std::string& ov) {
  const std::string where = "--set " + ov;
  size_t eq = ov.find('=');
  if (eq == std::string::npos)
    fail(where, "expected key.path=value (for example --set train.lr=3e-4)");
  std::string path = ov.substr(0, eq);
  path.erase(0, path.find_first_not_of(" \t"));
  path.erase(path.find_last_not_of(" \t") + 1);
  const std::string value = ov.substr(eq + 1);
  if (is_section(path) || is_group(path))
    fail(where, fmt::format("'{}' is a {}; name one of its keys ({})", path,
                            is_section(path) ? "section" : "group of keys",
                            join(keys_of(path), ", ")));
  const KeySpec* spec = find_key(path);
  if (!spec) fail(where, unknown_key_msg(path));
  YAML::Node node;
  const bool quoted_value = !value.empty() && (value[0] == '"' || value[0] == '\'');
  if (std::holds_alternative<StringRef>(spec->field) && !quoted_value) {
    node = YAML::Node(value);  // an unquoted string value is taken verbatim
  } else {
    try {
      node = YAML::Load(value);
    } catch (const YAML::Exception& e) {
      fail(where, fmt::format("{}: the value is not valid YAML: {}", path, e.msg));
    }
  }
  apply(cfg, *spec, node, where);
  cfg.origins[path] = where;
}

// Applies the mapping `body` of the keys under `prefix` (a section "train" or a group
// "train.checkpoint"), descending into groups. `seen` holds every path set so far in the
// document with its line, for duplicate messages. A key may also be written dotted
// ("checkpoint.dir: x" under train:); it is the same key, and a duplicate of the nested form.
void apply_mapping(RunConfig& cfg, const std::string& prefix, const YAML::Node& body,
                   std::map<std::string, int>& seen) {
  const std::string& src = cfg.source;
  for (auto kv = body.begin(); kv != body.end(); ++kv) {
    const YAML::Node k = kv->first, v = kv->second;
    const std::string kwhere = at(src, k.Mark());
    if (!k.IsScalar()) fail(kwhere, fmt::format("{}: expected a key name, got {}", prefix,
                                                got_text(k)));
    const std::string path = prefix + "." + k.Scalar();
    const KeySpec* spec = find_key(path);
    const bool group = !spec && is_group(path);
    if (!spec && !group) fail(kwhere, unknown_key_msg(path));
    auto [prev, new_key] = seen.emplace(path, k.Mark().line + 1);
    if (!new_key)
      fail(kwhere, fmt::format("duplicate key '{}' (first set at line {})", path, prev->second));
    if (group) {
      if (v.IsNull()) continue;  // `group:` with nothing under it
      if (!v.IsMap())
        fail(kwhere, fmt::format("{}: expected a mapping of {}.* keys ({}), got {}", path, path,
                                 join(keys_of(path), ", "), got_text(v)));
      apply_mapping(cfg, path, v, seen);
      continue;
    }
    apply(cfg, *spec, v, kwhere);
    cfg.origins[path] = kwhere;
  }
}

void apply_document(RunConfig& cfg, const YAML::Node& root) {
  const std::string& src = cfg.source;
  if (!root.IsMap())
    fail(at(src, root.Mark()), fmt::format("expected a mapping of sections ({}), got {}",
                                           join(sections(), ", "), got_text(root)));
  std::map<std::string, int> seen_sections;
  std::map<std::string, int> seen_keys;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const YAML::Node key = it->first, body = it->second;
    const std::string where = at(src, key.Mark());
    if (!key.IsScalar()) fail(where, "expected a section name, got " + got_text(key));
    const std::string section = key.Scalar();
    if (!is_section(section)) fail(where, unknown_section_msg(section));
    auto [first, fresh] = seen_sections.emplace(section, key.Mark().line + 1);
    if (!fresh)
      fail(where, fmt::format("duplicate section '{}' (first at line {})", section, first->second));
    if (body.IsNull()) continue;  // `section:` with nothing under it
    if (!body.IsMap())
      fail(where, fmt::format("{}: expected a mapping of {}.* keys, got {}", section, section,
                              got_text(body)));
    apply_mapping(cfg, section, body, seen_keys);
  }
}

}  // namespace

// ------------------------------------------------------------------ public API

std::vector<std::string> config_keys() {
  std::vector<std::string> out;
  for (const KeySpec& k : schema()) out.emplace_back(k.path);
  return out;
}

RunConfig config_from_yaml_string(const std::string& text,
                                  const std::vector<std::string>& overrides,
                                  const std::string& source) {
  RunConfig cfg;
  cfg.source = source;
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    fail(at(source, e.mark), fmt::format("invalid YAML: {}", e.msg));
  }
  if (docs.size() > 1)
    fail(at(source, docs[1].Mark()),
         fmt::format("expected one YAML document, found {} (remove the '---' separators)",
                     docs.size()));
  try {
    if (!docs.empty() && !docs[0].IsNull()) apply_document(cfg, docs[0]);
    for (const std::string& ov : overrides) apply_override(cfg, ov);
  } catch (const YAML::Exception& e) {  // defensive: yaml-cpp errors while walking the tree
    fail(at(source, e.mark), fmt::format("invalid YAML: {}", e.msg));
  }
  check_cross_keys(cfg);
  return cfg;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw ConfigError(fmt::format("{}: config file not found", path));
  if (std::filesystem::is_directory(path, ec))
    throw ConfigError(fmt::format("{}: is a directory, expected a YAML config file", path));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw ConfigError(fmt::format("{}: cannot open config file: {}", path, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(fmt::format("{}: cannot read config file", path));
  return config_from_yaml_string(text.str(), overrides, path);
}

void check_layout(const RunConfig& cfg, int world_size) {
  const ParallelOptions& p = cfg.parallel;
  const ModelOptions& m = cfg.model;
  if (static_cast<long long>(p.dp) * p.tp * p.pp != world_size)
    fail(lead(cfg, {"parallel.dp", "parallel.tp", "parallel.pp"}),
         fmt::format("parallel.dp * parallel.tp * parallel.pp = {} * {} * {} = {} but the job has {} "
                     "ranks", p.dp, p.tp, p.pp, static_cast<long long>(p.dp) * p.tp * p.pp,
                     world_size));
  if (m.heads % p.tp != 0)
    fail(lead(cfg, {"parallel.tp", "model.heads"}),
         fmt::format("model.heads={} is not divisible by parallel.tp={} (attention is split by heads)",
                     m.heads, p.tp));
  if (m.padded_vocab() % p.tp != 0)
    fail(lead(cfg, {"parallel.tp", "model.vocab"}),
         fmt::format("the padded vocabulary {} (model.vocab={} rounded up to a multiple of {}) is not "
                     "divisible by parallel.tp={}", m.padded_vocab(), m.vocab,
                     ModelOptions::kVocabPad, p.tp));
  if (p.chunks > 1 && p.schedule != "interleaved")
    fail(lead(cfg, {"parallel.chunks", "parallel.schedule"}),
         fmt::format("parallel.chunks={} needs parallel.schedule: interleaved (got {})", p.chunks,
                     p.schedule));
  const long long vstages = static_cast<long long>(p.pp) * p.chunks;
  if (m.layers < vstages)
    fail(lead(cfg, {"parallel.pp", "parallel.chunks", "model.layers"}),
         fmt::format("model.layers={} is fewer than the {} pipeline stages (parallel.pp={} x "
                     "parallel.chunks={}); every stage needs at least one layer", m.layers, vstages,
                     p.pp, p.chunks));
  check_batch_layout(cfg);
  try {
    check_schedule(parse_schedule(p.schedule), p.pp, p.microbatches, p.chunks);
  } catch (const ConfigError& e) {
    fail(lead(cfg, {"parallel.schedule", "parallel.microbatches", "parallel.pp", "parallel.chunks"}),
         e.what());
  }
}

void check_batch_layout(const RunConfig& cfg) {
  const int dp = cfg.parallel.dp, mb = cfg.parallel.microbatches, batch = cfg.train.batch;
  const long long div = static_cast<long long>(dp) * mb;
  if (batch % div != 0)
    fail(lead(cfg, {"train.batch", "parallel.microbatches", "parallel.dp"}),
         fmt::format("train.batch={} must be a multiple of parallel.dp * parallel.microbatches "
                     "= {} * {} = {} (train.batch: {}; parallel.dp: {}; "
                     "parallel.microbatches: {})",
                     batch, dp, mb, div, origin_of(cfg, "train.batch"),
                     origin_of(cfg, "parallel.dp"), origin_of(cfg, "parallel.microbatches")));
}

std::string describe_config(const RunConfig& cfg) {
  std::string out = fmt::format("config {}", cfg.source.empty() ? "<defaults>" : cfg.source);
  std::string section;
  for (const KeySpec& k : schema()) {
    if (k.section() != section) {
      section = k.section();
      out += fmt::format("\n  {:<9}", section + ":");
    }
    out += fmt::format(" {}={}", k.leaf(), log_value(cfg, k));
  }
  return out;
}

std::string config_to_yaml(const RunConfig& cfg) {
  std::string out;
  std::vector<std::string> open;  // the section and groups the previous key was written in
  for (const KeySpec& k : schema()) {
    std::vector<std::string> parts;
    std::stringstream ss{std::string(k.path)};
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    const size_t depth = parts.size() - 1;  // mappings above the key
    size_t same = 0;
    while (same < open.size() && same < depth && open[same] == parts[same]) ++same;
    for (size_t i = same; i < depth; ++i)
      out += fmt::format("{}{}:\n", std::string(2 * i, ' '), parts[i]);
    open.assign(parts.begin(), parts.begin() + static_cast<std::ptrdiff_t>(depth));
    out += fmt::format("{}{}: {}\n", std::string(2 * depth, ' '), parts[depth],
                       yaml_value(cfg, k));
  }
  return out;
}

}  // namespace tandem
