// json_lite: recursive-descent JSON parser and writer (contract in json_lite.h).
#include "ckpt/json_lite.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <set>

#include "runtime/core/error.h"

namespace tandem::ckpt {

Json Json::array(Array a) {
  Json j;
  j.type_ = Type::Array;
  j.a_ = std::move(a);
  return j;
}

Json Json::object(Object o) {
  Json j;
  j.type_ = Type::Object;
  j.o_ = std::move(o);
  return j;
}

const char* Json::type_name() const {
  switch (type_) {
    case Type::Null: return "null";
    case Type::Bool: return "bool";
    case Type::Number: return is_int_ ? "integer" : "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

#define TANDEM_JSON_EXPECT(cond, want) \
  TANDEM_CHECK(cond, "JSON value is {}, expected {}", type_name(), want)

bool Json::as_bool() const {
  TANDEM_JSON_EXPECT(type_ == Type::Bool, "bool");
  return b_;
}
double Json::as_double() const {
  TANDEM_JSON_EXPECT(type_ == Type::Number, "a number");
  return d_;
}
int64_t Json::as_int() const {
  TANDEM_JSON_EXPECT(is_int(), "an integer");
  return i_;
}
const std::string& Json::as_string() const {
  TANDEM_JSON_EXPECT(type_ == Type::String, "a string");
  return s_;
}
const Json::Array& Json::as_array() const {
  TANDEM_JSON_EXPECT(type_ == Type::Array, "an array");
  return a_;
}
const Json::Object& Json::as_object() const {
  TANDEM_JSON_EXPECT(type_ == Type::Object, "an object");
  return o_;
}
const Json* Json::find(std::string_view key) const {
  for (const auto& [k, v] : as_object())
    if (k == key) return &v;
  return nullptr;
}
Json& Json::set(std::string key, Json value) {
  TANDEM_JSON_EXPECT(type_ == Type::Object, "an object");
  for (auto& [k, v] : o_)
    if (k == key) {
      v = std::move(value);
      return *this;
    }
  o_.emplace_back(std::move(key), std::move(value));
  return *this;
}
void Json::push_back(Json value) {
  TANDEM_JSON_EXPECT(type_ == Type::Array, "an array");
  a_.push_back(std::move(value));
}
#undef TANDEM_JSON_EXPECT

// ---------------------------------------------------------------- parser
namespace {

constexpr int kMaxDepth = 512;

class Parser {
 public:
  Parser(std::string_view text, std::string_view what) : t_(text), what_(what) {}

  Json parse_document() {
    ws();
    Json v = value(0);
    ws();
    if (p_ != t_.size()) fail("trailing characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(std::string_view msg) const {
    const size_t n = std::min<size_t>(24, t_.size() - std::min(p_, t_.size()));
    std::string near;
    for (char c : t_.substr(std::min(p_, t_.size()), n))
      near += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
    throw Error(fmt::format("{}: invalid JSON at byte {}: {} (found \"{}\"{})", what_, p_, msg,
                            near, p_ >= t_.size() ? ", end of text" : ""));
  }
  void ws() {
    while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r'))
      ++p_;
  }
  bool eat(char c) {
    if (p_ < t_.size() && t_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void expect_word(std::string_view w) {
    if (t_.substr(p_, w.size()) != w) fail(fmt::format("expected `{}`", w));
    p_ += w.size();
  }

  Json value(int depth) {
    if (depth > kMaxDepth) fail(fmt::format("nesting deeper than {}", kMaxDepth));
    if (p_ >= t_.size()) fail("expected a value");
    switch (t_[p_]) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': return Json(string());
      case 't': expect_word("true"); return Json(true);
      case 'f': expect_word("false"); return Json(false);
      case 'n': expect_word("null"); return Json();
      default: return number();
    }
  }

  Json object(int depth) {
    ++p_;  // '{'
    Json obj = Json::object();
    std::set<std::string, std::less<>> seen;
    ws();
    if (eat('}')) return obj;
    for (;;) {
      ws();
      if (p_ >= t_.size() || t_[p_] != '"') fail("expected a string key");
      const size_t key_at = p_;
      std::string key = string();
      if (!seen.insert(key).second) {
        p_ = key_at;
        fail(fmt::format("duplicate key \"{}\"", key));
      }
      ws();
      if (!eat(':')) fail("expected ':'");
      ws();
      Json v = value(depth + 1);
      obj.set(std::move(key), std::move(v));  // keys are unique, so this appends
      ws();
      if (eat('}')) return obj;
      if (!eat(',')) fail("expected ',' or '}'");
    }
  }

  Json array(int depth) {
    ++p_;  // '['
    Json arr = Json::array();
    ws();
    if (eat(']')) return arr;
    for (;;) {
      ws();
      arr.push_back(value(depth + 1));
      ws();
      if (eat(']')) return arr;
      if (!eat(',')) fail("expected ',' or ']'");
    }
  }

  unsigned hex4() {
    if (p_ + 4 > t_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = t_[p_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++p_;  // opening quote
    std::string s;
    for (;;) {
      if (p_ >= t_.size()) fail("unterminated string");
      const char c = t_[p_];
      if (c == '"') {
        ++p_;
        return s;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        s += c;
        ++p_;
        continue;
      }
      if (++p_ >= t_.size()) fail("unterminated escape");
      const char e = t_[p_++];
      switch (e) {
        case '"': s += '"'; break;
        case '\\': s += '\\'; break;
        case '/': s += '/'; break;
        case 'b': s += '\b'; break;
        case 'f': s += '\f'; break;
        case 'n': s += '\n'; break;
        case 'r': s += '\r'; break;
        case 't': s += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (t_.substr(p_, 2) != "\\u") fail("high surrogate without a low surrogate");
            p_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("invalid low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("lone low surrogate");
          }
          put_utf8(s, cp);
          break;
        }
        default: --p_; fail("unknown escape");
      }
    }
  }

  Json number() {
    const size_t start = p_;
    bool integral = true;
    eat('-');
    if (p_ >= t_.size() || !std::isdigit(static_cast<unsigned char>(t_[p_])))
      fail("expected a value");
    if (t_[p_] == '0') ++p_;
    else
      while (p_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[p_]))) ++p_;
    auto digits = [&] {
      if (p_ >= t_.size() || !std::isdigit(static_cast<unsigned char>(t_[p_])))
        fail("expected a digit");
      while (p_ < t_.size() && std::isdigit(static_cast<unsigned char>(t_[p_]))) ++p_;
    };
    if (eat('.')) {
      integral = false;
      digits();
    }
    if (p_ < t_.size() && (t_[p_] == 'e' || t_[p_] == 'E')) {
      integral = false;
      ++p_;
      if (!eat('+')) eat('-');
      digits();
    }
    const char* b = t_.data() + start;
    const char* e = t_.data() + p_;
    if (integral) {
      int64_t i = 0;
      const auto r = std::from_chars(b, e, i);
      if (r.ec == std::errc() && r.ptr == e) return Json(i);
    }
    double d = 0;
    const auto r = std::from_chars(b, e, d);
    if (r.ec != std::errc() || r.ptr != e) {
      p_ = start;
      fail("number out of range");
    }
    return Json(d);
  }

  std::string_view t_;
  std::string_view what_;
  size_t p_ = 0;
};

// ---------------------------------------------------------------- writer
void write_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        else
          out += c;
    }
  }
  out += '"';
}

void write_value(std::string& out, const Json& v, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * lvl), ' ');
  };
  switch (v.type()) {
    case Json::Type::Null: out += "null"; break;
    case Json::Type::Bool: out += v.as_bool() ? "true" : "false"; break;
    case Json::Type::Number:
      if (v.is_int()) {
        out += fmt::format("{}", v.as_int());
      } else {
        const double d = v.as_double();
        TANDEM_CHECK(std::isfinite(d), "JSON cannot hold the number {}", d);
        std::string s = fmt::format("{}", d);  // shortest form that round-trips
        if (s.find_first_of(".eE") == std::string::npos) s += ".0";
        out += s;
      }
      break;
    case Json::Type::String: write_string(out, v.as_string()); break;
    case Json::Type::Array: {
      const auto& a = v.as_array();
      out += '[';
      for (size_t k = 0; k < a.size(); ++k) {
        if (k) out += indent < 0 ? "," : ", ";
        write_value(out, a[k], indent, level + 1);  // arrays stay on one line
      }
      out += ']';
      break;
    }
    case Json::Type::Object: {
      const auto& o = v.as_object();
      out += '{';
      for (size_t k = 0; k < o.size(); ++k) {
        if (k) out += ',';
        newline(level + 1);
        write_string(out, o[k].first);
        out += indent < 0 ? ":" : ": ";
        write_value(out, o[k].second, indent, level + 1);
      }
      if (!o.empty()) newline(level);
      out += '}';
      break;
    }
  }
}

}  // namespace

Json parse_json(std::string_view text, std::string_view what) {
  return Parser(text, what).parse_document();
}

std::string to_json(const Json& value, int indent) {
  std::string out;
  write_value(out, value, indent, 0);
  return out;
}

}  // namespace tandem::ckpt
