// Test support: reader for golden fixtures written by tests/golden/make_golden.py.
//
// Contract: load_golden(path) reads the whole file ("TNDMGLD1", u32 record count, then per
// record: u32 name length, name, u32 dtype (0 = f32, 1 = i32), u32 ndim, ndim x i64 dims, raw
// little-endian data) into a map name -> GoldenTensor. Every malformed or missing piece throws
// std::runtime_error naming the file (and the record), never a silent default. Header-only
// because tests/ has no library target.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::testing {

struct GoldenTensor {
  enum DType : uint32_t { F32 = 0, I32 = 1 };
  DType dtype = F32;
  std::vector<int64_t> shape;   // empty: scalar
  std::vector<float> f32;       // filled when dtype == F32
  std::vector<int32_t> i32;     // filled when dtype == I32
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class GoldenFixture {
 public:
  GoldenFixture() = default;
  GoldenFixture(std::string path, std::map<std::string, GoldenTensor> t)
      : path_(std::move(path)), tensors_(std::move(t)) {}

  const std::string& path() const { return path_; }
  const std::map<std::string, GoldenTensor>& all() const { return tensors_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }

  const GoldenTensor& at(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("has no record '" + name + "'");
    return it->second;
  }
  const std::vector<float>& f32(const std::string& name) const {
    const GoldenTensor& t = at(name);
    if (t.dtype != GoldenTensor::F32) fail("record '" + name + "' is not f32");
    return t.f32;
  }
  const std::vector<int32_t>& i32(const std::string& name) const {
    const GoldenTensor& t = at(name);
    if (t.dtype != GoldenTensor::I32) fail("record '" + name + "' is not i32");
    return t.i32;
  }
  float scalar_f32(const std::string& name) const { return one(f32(name), name); }
  int32_t scalar_i32(const std::string& name) const { return one(i32(name), name); }

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("golden fixture " + path_ + ": " + what);
  }

 private:
  template <class T>
  T one(const std::vector<T>& v, const std::string& name) const {
    if (v.size() != 1) fail("record '" + name + "' is not a scalar");
    return v[0];
  }
  std::string path_;
  std::map<std::string, GoldenTensor> tensors_;
};

inline GoldenFixture load_golden(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("golden fixture " + path + ": cannot open (regenerate with "
                                    "/usr/bin/python3 tests/golden/make_golden.py)");
  const std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  std::string where = "header";
  auto fail = [&](const std::string& what) {
    throw std::runtime_error("golden fixture " + path + ": " + what + " (in " + where +
                             ", byte " + std::to_string(pos) + " of " +
                             std::to_string(buf.size()) + ")");
  };
  auto take = [&](void* dst, size_t n) {
    if (n > buf.size() - pos) fail("truncated");
    std::memcpy(dst, buf.data() + pos, n);  // the format is little-endian, as is every host we build for
    pos += n;
  };
  auto u32 = [&] {
    uint32_t v;
    take(&v, 4);
    return v;
  };
  char magic[8];
  take(magic, 8);
  if (std::memcmp(magic, "TNDMGLD1", 8) != 0) fail("bad magic (expected TNDMGLD1)");
  const uint32_t count = u32();
  std::map<std::string, GoldenTensor> out;
  for (uint32_t r = 0; r < count; ++r) {
    where = "record " + std::to_string(r);
    const uint32_t len = u32();
    if (len == 0 || len > 4096) fail("implausible name length " + std::to_string(len));
    std::string name(len, '\0');
    take(name.data(), len);
    where = "record " + std::to_string(r) + " '" + name + "'";
    GoldenTensor t;
    const uint32_t dtype = u32();
    if (dtype > 1) fail("unknown dtype " + std::to_string(dtype));
    t.dtype = static_cast<GoldenTensor::DType>(dtype);
    const uint32_t ndim = u32();
    if (ndim > 8) fail("implausible ndim " + std::to_string(ndim));
    t.shape.resize(ndim);
    for (auto& d : t.shape) {
      take(&d, 8);
      if (d < 0 || d > (int64_t{1} << 32)) fail("bad dimension " + std::to_string(d));
    }
    const int64_t n = t.numel();
    if (static_cast<uint64_t>(n) * 4 > buf.size() - pos) fail("truncated data");
    if (t.dtype == GoldenTensor::F32) {
      t.f32.resize(n);
      take(t.f32.data(), n * 4);
    } else {
      t.i32.resize(n);
      take(t.i32.data(), n * 4);
    }
    if (!out.emplace(name, std::move(t)).second) fail("duplicate record");
  }
  where = "trailer";
  if (pos != buf.size()) fail("trailing bytes after " + std::to_string(count) + " records");
  return GoldenFixture(path, std::move(out));
}

}  // namespace tandem::testing
