// safetensors reader and writer (contract in safetensors.h).
#include "ckpt/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include "ckpt/json_lite.h"
#include "runtime/core/error.h"
#include "runtime/core/file_io.h"

namespace tandem::ckpt {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this code copies host floats as they are");

namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the limit of the reference implementation

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  uint32_t man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000 | (man << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    bits = sign;  // signed zero
  } else {        // subnormal: normalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while ((man & 0x400) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3FF) << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_float(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// Bytes per element of the dtypes safetensors defines (0 = unknown name).
int dtype_bytes(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& path, const std::string& name, const Json& v) {
  auto bad = [&](const std::string& msg) {
    return Error(fmt::format("{}: tensor \"{}\": {}", path, name, msg));
  };
  if (v.type() != Json::Type::Object)
    throw bad(fmt::format("header entry is a JSON {}, expected an object", v.type_name()));
  const Json* dtype = v.find("dtype");
  const Json* shape = v.find("shape");
  const Json* offs = v.find("data_offsets");
  if (!dtype || dtype->type() != Json::Type::String)
    throw bad("missing or non-string \"dtype\"");
  if (!shape || shape->type() != Json::Type::Array) throw bad("missing or non-array \"shape\"");
  if (!offs || offs->type() != Json::Type::Array || offs->as_array().size() != 2)
    throw bad("\"data_offsets\" must be an array [begin, end]");
  Entry e{name, dtype->as_string(), {}, 0, 0};
  for (const Json& d : shape->as_array()) {
    if (!d.is_int() || d.as_int() < 0)
      throw bad(fmt::format("shape holds {}, expected non-negative integers", to_json(*shape)));
    e.shape.push_back(d.as_int());
  }
  for (const Json& o : offs->as_array())
    if (!o.is_int() || o.as_int() < 0)
      throw bad(fmt::format("data_offsets {} must be non-negative integers", to_json(*offs)));
  e.begin = static_cast<uint64_t>(offs->as_array()[0].as_int());
  e.end = static_cast<uint64_t>(offs->as_array()[1].as_int());
  return e;
}

void read_exact(std::ifstream& in, const std::string& path, uint64_t at, char* dst, uint64_t n) {
  in.seekg(static_cast<std::streamoff>(at));
  in.read(dst, static_cast<std::streamsize>(n));
  TANDEM_CHECK(in.good(), "{}: cannot read {} bytes at offset {}", path, n, at);
}

}  // namespace

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    TANDEM_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
    TANDEM_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d,
                 "shape {} has too many elements", shape_str(shape));
    n *= d;
  }
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k) s += fmt::format("{}{}", k ? ", " : "", shape[k]);
  return s + "]";
}

void write_safetensors(const std::string& path, const std::vector<HostTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata) meta.set(k, Json(v));
    header.set("__metadata__", std::move(meta));
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const HostTensor& t : tensors) {
    TANDEM_CHECK(!t.name.empty() && t.name != "__metadata__",
                 "{}: invalid tensor name \"{}\"", path, t.name);
    TANDEM_CHECK(names.insert(t.name).second, "{}: duplicate tensor name \"{}\"", path, t.name);
    const int64_t n = shape_numel(t.shape);
    TANDEM_CHECK(static_cast<int64_t>(t.data.size()) == n,
                 "{}: tensor \"{}\" has {} values but shape {} needs {}", path, t.name,
                 t.data.size(), shape_str(t.shape), n);
    Json shape = Json::array();
    for (int64_t d : t.shape) shape.push_back(Json(d));
    const uint64_t end = offset + static_cast<uint64_t>(n) * sizeof(float);
    header.set(t.name, Json::object({{"dtype", Json("F32")},
                                     {"shape", std::move(shape)},
                                     {"data_offsets", Json::array({Json(static_cast<int64_t>(offset)),
                                                                   Json(static_cast<int64_t>(end))})}}));
    offset = end;
  }
  std::string text = to_json(header);
  text.append((8 - text.size() % 8) % 8, ' ');

  AtomicFile out(path);  // path.tmp, renamed into place; removed on any failure
  const uint64_t n = text.size();
  char len[8];
  for (int k = 0; k < 8; ++k) len[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
  out.write(len, 8);
  out.write(text);
  for (const HostTensor& t : tensors) out.write(t.data.data(), t.data.size() * sizeof(float));
  out.commit();
}

std::vector<HostTensor> read_safetensors(const std::string& path,
                                         std::map<std::string, std::string>* metadata) {
  std::error_code ec;
  const uint64_t file_bytes = fs::file_size(path, ec);
  TANDEM_CHECK(!ec, "cannot open safetensors file {}: {}", path, ec.message());
  TANDEM_CHECK(file_bytes >= 8, "{}: file is {} bytes, too short for the 8-byte header length",
               path, file_bytes);
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK(in.good(), "cannot open safetensors file {}: {}", path, std::strerror(errno));

  unsigned char len[8];
  read_exact(in, path, 0, reinterpret_cast<char*>(len), 8);
  uint64_t header_bytes = 0;
  for (int k = 7; k >= 0; --k) header_bytes = (header_bytes << 8) | len[k];
  TANDEM_CHECK(header_bytes <= file_bytes - 8,
               "{}: header length {} runs past the end of the file ({} bytes)", path,
               header_bytes, file_bytes);
  TANDEM_CHECK(header_bytes <= kMaxHeaderBytes, "{}: header length {} exceeds the limit {}",
               path, header_bytes, kMaxHeaderBytes);
  std::string text(header_bytes, '\0');
  read_exact(in, path, 8, text.data(), header_bytes);
  const Json header = parse_json(text, fmt::format("{}: header", path));
  TANDEM_CHECK(header.type() == Json::Type::Object, "{}: header is a JSON {}, expected an object",
               path, header.type_name());

  const uint64_t data_at = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_at;
  std::vector<Entry> entries;
  for (const auto& [name, v] : header.as_object()) {
    if (name == "__metadata__") {
      TANDEM_CHECK(v.type() == Json::Type::Object, "{}: __metadata__ is a JSON {}, expected an "
                   "object of strings", path, v.type_name());
      for (const auto& [k, s] : v.as_object()) {
        TANDEM_CHECK(s.type() == Json::Type::String, "{}: __metadata__ \"{}\" is a JSON {}, "
                     "expected a string", path, k, s.type_name());
        if (metadata) (*metadata)[k] = s.as_string();
      }
      continue;
    }
    Entry e = parse_entry(path, name, v);
    const int esize = dtype_bytes(e.dtype);
    TANDEM_CHECK(e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16",
                 "{}: tensor \"{}\" has dtype {}{}; only F32, F16 and BF16 can be read", path,
                 name, e.dtype, esize ? "" : " (not a safetensors dtype)");
    TANDEM_CHECK(e.begin <= e.end && e.end <= data_bytes,
                 "{}: tensor \"{}\" data_offsets [{}, {}] are outside the data section of {} "
                 "bytes", path, name, e.begin, e.end, data_bytes);
    const int64_t n = shape_numel(e.shape);
    TANDEM_CHECK(e.end - e.begin == static_cast<uint64_t>(n) * esize,
                 "{}: tensor \"{}\" data_offsets [{}, {}] span {} bytes but shape {} of {} needs "
                 "{}", path, name, e.begin, e.end, e.end - e.begin, shape_str(e.shape), e.dtype,
                 static_cast<uint64_t>(n) * esize);
    entries.push_back(std::move(e));
  }

  // The tensors must tile the data section exactly: no overlap, no hole, nothing after.
  std::vector<const Entry*> sorted;
  for (const Entry& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : sorted) {
    TANDEM_CHECK(e->begin >= cursor, "{}: tensor \"{}\" data_offsets [{}, {}] overlap tensor "
                 "\"{}\" [{}, {}]", path, e->name, e->begin, e->end, prev->name, prev->begin,
                 prev->end);
    TANDEM_CHECK(e->begin == cursor, "{}: hole in the data section: bytes [{}, {}) before tensor "
                 "\"{}\" belong to no tensor", path, cursor, e->begin, e->name);
    cursor = e->end;
    prev = e;
  }
  TANDEM_CHECK(cursor == data_bytes, "{}: the data section has {} bytes but the tensors cover "
               "only {}", path, data_bytes, cursor);

  std::vector<HostTensor> out;
  out.reserve(entries.size());
  std::vector<uint16_t> half;
  for (const Entry& e : entries) {
    HostTensor t{e.name, e.shape, std::vector<float>(static_cast<size_t>(shape_numel(e.shape)))};
    const uint64_t bytes = e.end - e.begin;
    if (e.dtype == "F32") {
      read_exact(in, path, data_at + e.begin, reinterpret_cast<char*>(t.data.data()), bytes);
    } else {
      half.resize(t.data.size());
      read_exact(in, path, data_at + e.begin, reinterpret_cast<char*>(half.data()), bytes);
      const bool bf = e.dtype == "BF16";
      for (size_t k = 0; k < half.size(); ++k)
        t.data[k] = bf ? bf16_to_float(half[k]) : half_to_float(half[k]);
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace tandem::ckpt
