// json_lite: a small JSON value, parser and writer, enough for safetensors headers and
// Hugging Face config.json files.
//
// Contract: parse_json accepts RFC 8259 JSON (objects, arrays, strings with every escape
// including \uXXXX surrogate pairs, which become UTF-8, numbers, true/false/null) with
// surrounding whitespace, nesting at most 512 deep. A number written without fraction or
// exponent that fits int64 keeps its exact integer value. Duplicate keys in one object are an
// error. Every error throws tandem::Error naming `what` (for example the file), the byte
// offset and the text found there. Objects keep insertion order and to_json writes them in
// that order; to_json throws on NaN or infinity. Accessors (as_int, as_string, ...) throw an
// Error naming the expected and the actual type.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::ckpt {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<Json>;
  using Object = std::vector<std::pair<std::string, Json>>;

  Json() = default;  // null
  Json(bool b) : type_(Type::Bool), b_(b) {}
  Json(int v) : Json(static_cast<int64_t>(v)) {}
  Json(int64_t v) : type_(Type::Number), is_int_(true), i_(v), d_(static_cast<double>(v)) {}
  Json(double v) : type_(Type::Number), d_(v) {}
  Json(const char* s) : type_(Type::String), s_(s) {}
  Json(std::string s) : type_(Type::String), s_(std::move(s)) {}
  static Json array(Array a = {});
  static Json object(Object o = {});

  Type type() const { return type_; }
  const char* type_name() const;
  bool is_null() const { return type_ == Type::Null; }
  bool is_int() const { return type_ == Type::Number && is_int_; }  // an exact int64

  bool as_bool() const;
  double as_double() const;
  int64_t as_int() const;  // throws unless is_int()
  const std::string& as_string() const;
  const Array& as_array() const;
  const Object& as_object() const;

  // Objects: the member named `key`, or nullptr when absent (throws if not an object).
  const Json* find(std::string_view key) const;
  // Objects: replaces the member named `key` or appends it; returns *this for chaining.
  Json& set(std::string key, Json value);
  // Arrays: appends.
  void push_back(Json value);

 private:
  Type type_ = Type::Null;
  bool b_ = false;
  bool is_int_ = false;
  int64_t i_ = 0;
  double d_ = 0.0;
  std::string s_;
  Array a_;
  Object o_;
};

Json parse_json(std::string_view text, std::string_view what = "JSON text");
// indent < 0: compact, one line; indent >= 0: one member per line, `indent` spaces a level.
std::string to_json(const Json& value, int indent = -1);

}  // namespace tandem::ckpt
