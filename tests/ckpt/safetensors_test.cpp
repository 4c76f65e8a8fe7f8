// safetensors I/O and the json_lite parser/writer: round trips, header padding, F16/BF16
// decoding from hand-built bytes, and every malformed-file error (each names the file).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <sstream>

#include "tests/support/host_tensors.h"
#include "tests/support/temp_dir.h"
#include "ckpt/json_lite.h"
#include "ckpt/safetensors.h"
#include "runtime/core/error.h"

namespace tandem::ckpt {
namespace {

namespace fs = std::filesystem;

using tandem::testing::TempDir;
using tandem::testing::expect_bitwise_equal;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int k = 0; k < 8; ++k) s[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
  return s;
}

// A file from a header text and raw data bytes (the header is not padded).
std::string raw_file(const std::string& header, const std::string& data) {
  return u64le(header.size()) + header + data;
}

std::string f32_bytes(std::initializer_list<float> v) {
  std::string s;
  for (float f : v) s.append(reinterpret_cast<const char*>(&f), 4);
  return s;
}

// Runs fn, expects a tandem::Error whose message holds every one of `parts`.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one mentioning " << *parts.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in: " << msg;
  }
}

HostTensor ramp(const std::string& name, std::vector<int64_t> shape, float base) {
  HostTensor t{name, shape, std::vector<float>(static_cast<size_t>(shape_numel(shape)))};
  for (size_t k = 0; k < t.data.size(); ++k) t.data[k] = base + 0.37f * static_cast<float>(k);
  return t;
}

// ---------------------------------------------------------------- round trips
TEST(Safetensors, RoundTripShapesAndMetadata) {
  TempDir dir;
  std::vector<HostTensor> ts = {ramp("vec", {5}, 1.0f), ramp("mat", {3, 4}, -2.0f),
                                ramp("cube.three_d", {2, 3, 4}, 0.5f), ramp("scalar", {}, 7.0f),
                                ramp("empty", {0, 3}, 0.0f)};
  ts[0].data[1] = -0.0f;
  ts[0].data[2] = std::nanf("");
  ts[0].data[3] = std::numeric_limits<float>::denorm_min();
  ts[0].data[4] = -std::numeric_limits<float>::infinity();
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"step", "42"}, {"note", "quote \" backslash \\ tab \t é"}};
  const std::string path = dir.file("a.safetensors");
  write_safetensors(path, ts, meta);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  std::map<std::string, std::string> got_meta;
  expect_bitwise_equal(read_safetensors(path, &got_meta), ts);
  EXPECT_EQ(got_meta, meta);
  expect_bitwise_equal(read_safetensors(path), ts);  // metadata pointer optional
}

TEST(Safetensors, NoMetadataNoTensors) {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  write_safetensors(path, {});
  std::map<std::string, std::string> meta = {{"stale", "x"}};
  EXPECT_TRUE(read_safetensors(path, &meta).empty());
  EXPECT_EQ(meta.size(), 1u);
  EXPECT_EQ(slurp(path).substr(8, 2), "{}");
}

TEST(Safetensors, HeaderPaddedToEightAndDataPacked) {
  TempDir dir;
  for (int len = 1; len <= 9; ++len) {
    const std::string path = dir.file(fmt::format("p{}.safetensors", len));
    const std::vector<HostTensor> ts = {ramp(std::string(len, 'x'), {3}, 1.0f), ramp("y", {2}, 2.0f)};
    write_safetensors(path, ts, len % 2 ? std::map<std::string, std::string>{{"k", "v"}}
                                        : std::map<std::string, std::string>{});
    const std::string bytes = slurp(path);
    uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[k]);
    EXPECT_EQ(n % 8, 0u) << "name length " << len;
    ASSERT_EQ(bytes.size(), 8 + n + 5 * 4) << "name length " << len;
    const std::string header = bytes.substr(8, n);
    EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
    EXPECT_NE(header.find("\"dtype\":\"F32\""), std::string::npos) << header;
    EXPECT_NE(header.find("\"data_offsets\":[12,20]"), std::string::npos) << header;
    std::string data;
    for (const HostTensor& t : ts) data.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * 4);
    EXPECT_EQ(bytes.substr(8 + n), data);
  }
}

TEST(Safetensors, ReadsF16AndBF16FromHandBuiltBytes) {
  TempDir dir;
  const uint16_t f16[] = {0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001, 0x0200, 0x7C00, 0x8000};
  const uint16_t bf16[] = {0x3F80, 0xC040, 0x4049, 0x0001};
  std::string data(reinterpret_cast<const char*>(f16), sizeof f16);
  data.append(reinterpret_cast<const char*>(bf16), sizeof bf16);
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},"__metadata__":{"a":"b"}})";
  const std::string path = dir.file("half.safetensors");
  spit(path, raw_file(header, data));  // unpadded header is legal too
  const auto ts = read_safetensors(path);
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(ts[0].name, "h");
  EXPECT_EQ(ts[0].shape, (std::vector<int64_t>{2, 4}));
  const std::vector<float> want_h = {1.0f, -2.0f, 0.333251953125f, 65504.0f, std::ldexp(1.0f, -24),
                                     std::ldexp(1.0f, -15), std::numeric_limits<float>::infinity(),
                                     -0.0f};
  for (size_t k = 0; k < want_h.size(); ++k)
    EXPECT_EQ(std::bit_cast<uint32_t>(ts[0].data[k]), std::bit_cast<uint32_t>(want_h[k])) << k;
  const std::vector<float> want_b = {1.0f, -3.0f, 3.140625f, std::bit_cast<float>(0x00010000u)};
  EXPECT_EQ(ts[1].name, "b");
  for (size_t k = 0; k < want_b.size(); ++k)
    EXPECT_EQ(std::bit_cast<uint32_t>(ts[1].data[k]), std::bit_cast<uint32_t>(want_b[k])) << k;
  // F16 NaN stays NaN.
  spit(path, raw_file(R"({"n":{"dtype":"F16","shape":[],"data_offsets":[0,2]}})", std::string("\x01\x7E", 2)));
  EXPECT_TRUE(std::isnan(read_safetensors(path)[0].data[0]));
}

// ---------------------------------------------------------------- malformed files
class SafetensorsErrors : public ::testing::Test {
 protected:
  void expect_read_error(const std::string& bytes, std::initializer_list<std::string> parts) {
    spit(path, bytes);
    std::vector<std::string> all(parts);
    all.push_back(path);
    try {
      read_safetensors(path);
      ADD_FAILURE() << "no error; expected one mentioning " << all.front();
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const auto& p : all) EXPECT_NE(msg.find(p), std::string::npos) << "missing \"" << p << "\" in: " << msg;
    }
  }
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  const std::string two_f32 = f32_bytes({1.0f, 2.0f});
};

TEST_F(SafetensorsErrors, MissingAndTruncatedFiles) {
  expect_error([&] { read_safetensors(dir.file("nope.safetensors")); }, {"cannot open", "nope.safetensors"});
  expect_read_error(std::string("\x10\0\0\0\0", 5), {"5 bytes"});
  expect_read_error(std::string(), {"0 bytes"});
  // A good file cut short: the data section no longer holds the last tensor.
  TempDir d2;
  const std::string good = d2.file("good.safetensors");
  write_safetensors(good, {ramp("a", {4}, 0.0f), ramp("b", {6}, 0.0f)});
  const std::string bytes = slurp(good);
  expect_read_error(bytes.substr(0, bytes.size() - 4), {"\"b\"", "outside the data section", "[16, 40]"});
  expect_read_error(bytes.substr(0, 12), {"runs past the end"});
}

TEST_F(SafetensorsErrors, HeaderLengthPastEnd) {
  expect_read_error(u64le(1000) + "{}", {"header length 1000", "10 bytes"});
  expect_read_error(u64le(~0ull) + "{}", {"header length 18446744073709551615"});
}

TEST_F(SafetensorsErrors, OffsetsOutOfRangeOrNotMatchingShape) {
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,64]}})", two_f32),
                    {"\"a\"", "[0, 64]", "outside", "8 bytes"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", two_f32),
                    {"\"a\"", "[8, 0]"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", two_f32),
                    {"\"a\"", "span 8 bytes", "[3]", "needs 12"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", two_f32),
                    {"\"a\"", "non-negative"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", two_f32),
                    {"\"a\"", "[-2]"});
}

TEST_F(SafetensorsErrors, OverlapHoleAndTrailingBytes) {
  const std::string twelve = f32_bytes({1, 2, 3});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", twelve),
                    {"\"b\"", "[4, 12]", "overlap", "\"a\"", "[0, 8]"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", twelve),
                    {"hole", "[4, 8)", "\"b\""});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", twelve),
                    {"12 bytes", "only 8"});
}

TEST_F(SafetensorsErrors, UnsupportedAndUnknownDtypes) {
  expect_read_error(raw_file(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", two_f32),
                    {"\"w\"", "dtype I64", "F32, F16 and BF16"});
  expect_read_error(raw_file(R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,8]}})", two_f32),
                    {"\"w\"", "dtype Q7", "not a safetensors dtype"});
  expect_read_error(raw_file(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", two_f32),
                    {"\"w\"", "dtype"});
}

TEST_F(SafetensorsErrors, BadJsonAndBadHeaderShapes) {
  expect_read_error(raw_file(R"({"a": )", ""), {"invalid JSON", "header"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32"} junk})", ""), {"invalid JSON", "junk"});
  expect_read_error(raw_file("[1, 2]", ""), {"header is a JSON array"});
  expect_read_error(raw_file(R"({"a":[1]})", ""), {"\"a\"", "expected an object"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[1]}})", ""), {"\"a\"", "data_offsets"});
  expect_read_error(raw_file(R"({"__metadata__":{"k":1}})", ""), {"__metadata__", "\"k\"", "integer"});
  expect_read_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", two_f32),
                    {"duplicate key \"a\""});
}

TEST_F(SafetensorsErrors, WriterRejectsInconsistentTensors) {
  HostTensor t = ramp("t", {2, 3}, 0.0f);
  t.data.pop_back();
  expect_error([&] { write_safetensors(path, {t}); }, {"\"t\"", "5 values", "[2, 3]", "needs 6"});
  expect_error([&] { write_safetensors(path, {ramp("d", {1}, 0), ramp("d", {1}, 0)}); },
               {"duplicate", "\"d\""});
  expect_error([&] { write_safetensors(path, {ramp("__metadata__", {1}, 0)}); }, {"__metadata__"});
  expect_error([&] { write_safetensors(dir.file("no/such/dir/x.safetensors"), {}); }, {"no/such/dir"});
  EXPECT_FALSE(fs::exists(path));
}

// ---------------------------------------------------------------- json_lite
TEST(JsonLite, ParsesValuesAndEscapes) {
  const Json j = parse_json(R"( {"s": "a\"b\\c\/d\n\t\u00e9\ud83d\ude00", "i": -9007199254740993,
      "d": 1e-05, "f": 0.1, "z": 0, "t": true, "n": null, "a": [1, [2, {}], []], "o": {}} )");
  EXPECT_EQ(j.find("s")->as_string(), "a\"b\\c/d\n\t\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(j.find("i")->as_int(), -9007199254740993LL);  // exact beyond 2^53
  EXPECT_FALSE(j.find("d")->is_int());
  EXPECT_DOUBLE_EQ(j.find("d")->as_double(), 1e-5);
  EXPECT_DOUBLE_EQ(j.find("f")->as_double(), 0.1);
  EXPECT_TRUE(j.find("z")->is_int());
  EXPECT_TRUE(j.find("t")->as_bool());
  EXPECT_TRUE(j.find("n")->is_null());
  EXPECT_EQ(j.find("a")->as_array().size(), 3u);
  EXPECT_EQ(j.find("missing"), nullptr);
  EXPECT_EQ(j.as_object()[0].first, "s");  // insertion order
  EXPECT_EQ(j.as_object()[8].first, "o");
  expect_error([&] { j.find("s")->as_int(); }, {"string", "integer"});
}

TEST(JsonLite, WriterRoundTrips) {
  Json j = Json::object({{"b", Json(true)}, {"a", Json::array({Json(1), Json(2.5), Json()})}});
  j.set("s", Json("q\"\\\n\x01 é"));
  j.set("e", Json(1e-5));
  j.set("w", Json(3.0));
  j.set("b", Json(false));  // replaces in place
  EXPECT_EQ(to_json(j), R"({"b":false,"a":[1,2.5,null],"s":"q\"\\\n\u0001 é","e":1e-05,"w":3.0})");
  for (int indent : {-1, 0, 2}) {
    const Json back = parse_json(to_json(j, indent));
    EXPECT_EQ(to_json(back), to_json(j)) << indent;
  }
  EXPECT_EQ(to_json(Json::object(), 2), "{}");
  EXPECT_EQ(to_json(Json::object({{"k", Json(1)}}), 2), "{\n  \"k\": 1\n}");
  expect_error([] { to_json(Json(std::nan(""))); }, {"nan"});
}

TEST(JsonLite, Errors) {
  expect_error([] { parse_json("", "empty.json"); }, {"empty.json", "byte 0", "expected a value"});
  expect_error([] { parse_json("[1,]"); }, {"byte 3", "expected a value"});
  expect_error([] { parse_json(R"({"a":1 "b":2})"); }, {"expected ',' or '}'"});
  expect_error([] { parse_json(R"({"a":1,"a":2})"); }, {"duplicate key \"a\""});
  expect_error([] { parse_json(R"("abc)"); }, {"unterminated string"});
  expect_error([] { parse_json(R"("\x")"); }, {"unknown escape"});
  expect_error([] { parse_json(R"("\ud800")"); }, {"surrogate"});
  expect_error([] { parse_json("01"); }, {"trailing"});
  expect_error([] { parse_json("1."); }, {"expected a digit"});
  expect_error([] { parse_json("tru"); }, {"`true`"});
  expect_error([] { parse_json("1e999"); }, {"out of range"});
  expect_error([] { parse_json(std::string(600, '[') + std::string(600, ']')); }, {"nesting"});
  expect_error([] { parse_json("\"a\nb\""); }, {"control character"});
}

}  // namespace
}  // namespace tandem::ckpt
