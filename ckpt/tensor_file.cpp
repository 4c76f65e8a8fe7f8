// Parallel-HDF5 tensor files: checksums and the reader (contract in the header; the writer is
// in tensor_file_writer.cpp).
#include "ckpt/tensor_file.h"

#include <spdlog/fmt/fmt.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>

#include "ckpt/hdf5_util.h"
#include "parallel/agreement.h"
#include "parallel/io_watchdog.h"
#include "parallel/mpi_communicator.h"
#include "runtime/core/file_io.h"
#include "runtime/core/hash.h"

namespace tandem::ckpt {

using h5::Id;

namespace {

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw CheckpointError(fmt::format("checkpoint {}: {}: {}", file, what, h5::h5_error()));
}

std::optional<uint64_t> stored_checksum(hid_t ds) {
  std::optional<uint64_t> out;
  if (H5Aexists(ds, "checksum") > 0) {
    Id a(H5Aopen(ds, "checksum", H5P_DEFAULT), H5Aclose);
    uint64_t v = 0;
    if (H5Aread(a, H5T_NATIVE_UINT64, &v) >= 0) out = v;
  }
  H5Eclear2(H5E_DEFAULT);
  return out;
}

Dims dataset_dims(hid_t ds) {
  Id space(H5Dget_space(ds), H5Sclose);
  const int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> d(std::max(nd, 0));
  if (nd > 0) H5Sget_simple_extent_dims(space, d.data(), nullptr);
  return Dims(d.begin(), d.end());
}

}  // namespace

uint64_t word_hash(int64_t i, uint32_t word) { return splitmix64((static_cast<uint64_t>(i) << 32) ^ word); }

uint64_t element_hash(int64_t i, float v) { return word_hash(i, std::bit_cast<uint32_t>(v)); }

uint64_t text_checksum(const std::string& bytes) {
  uint64_t sum = 0;
  for (size_t w = 0; w * 4 < bytes.size(); ++w) {
    uint32_t word = 0;  // little-endian, zero-padded
    for (size_t b = 0; b < 4 && w * 4 + b < bytes.size(); ++b)
      word |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[w * 4 + b])) << (8 * b);
    sum += word_hash(static_cast<int64_t>(w), word);
  }
  return sum;
}

uint64_t pieces_checksum(const float* data, const std::vector<Piece>& pieces, const Dims& shape) {
  uint64_t sum = 0;
  const size_t nd = shape.size();
  Dims row_stride(nd, 1);
  for (size_t d = nd; d-- > 1;) row_stride[d - 1] = row_stride[d] * shape[d];
  for (const Piece& p : pieces) {
    const Hyperslab& s = p.slab;
    const float* src = data + p.local_offset;
    int64_t k = 0;
    // Walk the selected coordinates of dims 0..nd-2 in row-major order; the last dim is runs.
    std::vector<int64_t> it(nd, 0);  // position within count*block of each outer dim
    auto coord = [&](size_t d, int64_t j) { return s.start[d] + (j / s.block[d]) * s.stride[d] + j % s.block[d]; };
    while (true) {
      int64_t base = 0;
      for (size_t d = 0; d + 1 < nd; ++d) base += coord(d, it[d]) * row_stride[d];
      const size_t L = nd - 1;
      for (int64_t c = 0; c < s.count[L]; ++c) {
        const int64_t first = base + s.start[L] + c * s.stride[L];
        for (int64_t b = 0; b < s.block[L]; ++b) sum += element_hash(first + b, src[k++]);
      }
      size_t d = L;
      bool done = true;
      while (d-- > 0) {
        if (++it[d] < s.count[d] * s.block[d]) {
          done = false;
          break;
        }
        it[d] = 0;
      }
      if (done) break;
    }
  }
  return sum;
}

// ------------------------------------------------------------------ reader

struct TensorFileReader::Impl {
  MPI_Comm comm;
  std::string path;
  IoWatchdog dog;
  std::unique_ptr<Communicator> agree;
  Id file, dxpl;
  std::vector<std::string> names;
  struct Read {
    std::string name;
    uint64_t sum = 0;                 // this rank's share
    std::optional<uint64_t> stored;   // the dataset's checksum attribute
  };
  std::vector<Read> reads;  // in read order
  int64_t bytes = 0;
  std::string error;  // this rank's first read failure

  Impl(MPI_Comm c, const std::string& p, double timeout_s)
      : comm(c), path(p), dog(fmt::format("checkpoint file {}", p), timeout_s) {
    dog.phase("joining the other ranks");  // MPI_Comm_dup: collective, and no other watchdog
    agree = make_mpi_communicator(c, "checkpoint-file", timeout_s);
    dog.idle();
  }
  void throw_if_any_failed(const std::string& mine) {
    dog.idle();
    const GroupFailure f = first_failure(*agree, mine);
    if (f.failed()) throw CheckpointError(f.describe(agree->size()));
  }
};

namespace {
herr_t visit_link(hid_t g, const char* name, const H5L_info_t*, void* data) {
  hid_t o = H5Oopen(g, name, H5P_DEFAULT);
  if (o >= 0) {
    if (H5Iget_type(o) == H5I_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(name);
    H5Oclose(o);
  }
  return 0;
}

// Why this rank cannot open `path` as HDF5 ("" when it looks like an HDF5 file).
std::string precheck(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fmt::format("checkpoint {}: {}", path, os_error(errno));
  if (!S_ISREG(st.st_mode)) return fmt::format("checkpoint {}: not a regular file", path);
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return fmt::format("checkpoint {} ({} bytes): not an HDF5 file (no HDF5 signature; corrupt?)", path,
                       static_cast<uint64_t>(st.st_size));
  }
  return "";
}
}  // namespace

TensorFileReader::TensorFileReader(MPI_Comm comm, const std::string& path, double timeout_s)
    : impl_(std::make_unique<Impl>(comm, path, timeout_s)) {
  h5::quiet_hdf5();
  Impl& I = *impl_;
  I.dog.phase("checking the file");
  I.throw_if_any_failed(precheck(path));
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  Id fapl = h5::file_access(comm);
  I.dog.phase("opening the file");
  I.file = Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  std::string open_error;
  if (I.file < 0)
    open_error = fmt::format("checkpoint {}: cannot open ({} bytes; truncated or corrupt?): {}", path,
                             static_cast<uint64_t>(size), h5::h5_error());
  try {
    I.throw_if_any_failed(open_error);
  } catch (...) {
    I.file.release();  // open on some ranks only: abandoned (a collective close on a subset would hang)
    throw;
  }
  I.dxpl = h5::independent_transfer();
  I.dog.phase("listing the datasets");
  if (H5Lvisit(I.file, H5_INDEX_NAME, H5_ITER_INC, visit_link, &I.names) < 0) fail(path, "cannot list datasets");
  I.dog.idle();
  std::sort(I.names.begin(), I.names.end());
}

TensorFileReader::~TensorFileReader() {
  Impl& I = *impl_;
  if (I.file < 0) return;
  if (std::uncaught_exceptions() > 0 && I.agree->size() > 1) {
    I.file.release();  // unwinding on this rank: the others may never join a collective close
    return;
  }
  I.dog.phase("closing the file");
  H5Fclose(I.file.release());
  H5Eclear2(H5E_DEFAULT);
}

const std::string& TensorFileReader::path() const { return impl_->path; }
std::vector<std::string> TensorFileReader::datasets() const { return impl_->names; }
int64_t TensorFileReader::bytes_read() const { return impl_->bytes; }

bool TensorFileReader::has(const std::string& name) const {
  return std::binary_search(impl_->names.begin(), impl_->names.end(), name);
}

DatasetInfo TensorFileReader::info(const std::string& name) const {
  const Impl& I = *impl_;
  if (!has(name)) throw CheckpointError(fmt::format("checkpoint {}: missing dataset {}", I.path, name));
  Id ds(H5Dopen2(I.file, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (ds < 0) fail(I.path, fmt::format("cannot open dataset {}", name));
  DatasetInfo out;
  out.shape = dataset_dims(ds);
  Id t(H5Dget_type(ds), H5Tclose);
  if (H5Tequal(t, H5T_IEEE_F32LE) > 0) out.dtype = "float32";
  else if (H5Tget_class(t) == H5T_FLOAT) out.dtype = fmt::format("float{}", H5Tget_size(t) * 8);
  else if (H5Tget_class(t) == H5T_INTEGER) out.dtype = fmt::format("int{}", H5Tget_size(t) * 8);
  else out.dtype = "other";
  out.checksum = stored_checksum(ds);
  return out;
}

std::optional<AttrValue> TensorFileReader::attr(const std::string& name) const {
  const Impl& I = *impl_;
  if (H5Aexists(I.file, name.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  Id a(H5Aopen(I.file, name.c_str(), H5P_DEFAULT), H5Aclose);
  Id t(H5Aget_type(a), H5Tclose);
  Id space(H5Aget_space(a), H5Sclose);
  AttrValue out;
  const H5T_class_t cls = H5Tget_class(t);
  if (H5Sget_simple_extent_npoints(space) != 1) {
    out.kind = "array";
  } else if (cls == H5T_INTEGER) {
    out.kind = "int";
    if (H5Tget_sign(t) == H5T_SGN_NONE) {
      uint64_t u = 0;
      if (H5Aread(a, H5T_NATIVE_UINT64, &u) < 0) fail(I.path, fmt::format("cannot read attribute {}", name));
      out.too_wide = u > static_cast<uint64_t>(INT64_MAX);
      out.value = static_cast<int64_t>(u);
    } else if (H5Aread(a, H5T_NATIVE_INT64, &out.value) < 0) {
      fail(I.path, fmt::format("cannot read attribute {}", name));
    }
  } else if (cls == H5T_STRING) {
    out.kind = "string";
    if (H5Tis_variable_str(t) > 0) {
      char* s = nullptr;
      Id mt(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mt, H5T_VARIABLE);
      if (H5Aread(a, mt, &s) < 0) fail(I.path, fmt::format("cannot read attribute {}", name));
      out.text = s ? s : "";
      H5free_memory(s);
    } else {
      std::string buf(H5Tget_size(t), '\0');
      if (H5Aread(a, t, buf.data()) < 0) fail(I.path, fmt::format("cannot read attribute {}", name));
      buf.resize(std::strlen(buf.c_str()));
      out.text = buf;
    }
  } else {
    out.kind = cls == H5T_FLOAT ? "float" : "other";
  }
  return out;
}

std::optional<int64_t> TensorFileReader::attr_int(const std::string& name) const {
  const auto v = attr(name);
  if (!v) return std::nullopt;
  if (v->kind != "int")
    throw CheckpointError(fmt::format("checkpoint {}: attribute {} is a {}, not an integer", impl_->path, name, v->kind));
  if (v->too_wide)
    throw CheckpointError(fmt::format("checkpoint {}: attribute {} does not fit a signed 64-bit integer", impl_->path, name));
  return v->value;
}

std::optional<uint64_t> TensorFileReader::attr_uint64(const std::string& name) const {
  const auto v = attr(name);
  if (!v) return std::nullopt;
  if (v->kind != "int")
    throw CheckpointError(fmt::format("checkpoint {}: attribute {} is a {}, not an integer", impl_->path, name, v->kind));
  return static_cast<uint64_t>(v->value);
}

std::optional<std::string> TensorFileReader::attr_string(const std::string& name) const {
  const auto v = attr(name);
  if (!v) return std::nullopt;
  if (v->kind != "string")
    throw CheckpointError(fmt::format("checkpoint {}: attribute {} is a{} {}, not a string", impl_->path, name,
                                      v->kind == "int" ? "n" : "", v->kind));
  return v->text;
}

void TensorFileReader::read_tensor(const std::string& name, const Dims& shape, const std::vector<Segment>& segs) {
  Impl& I = *impl_;
  if (!has(name)) throw CheckpointError(fmt::format("checkpoint {}: missing dataset {}", I.path, name));
  Id ds(H5Dopen2(I.file, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (ds < 0) fail(I.path, fmt::format("cannot open dataset {}", name));
  const Dims found = dataset_dims(ds);
  if (found != shape)
    throw CheckpointError(fmt::format("checkpoint {}: dataset {} has shape {}, expected {}", I.path, name,
                                      dims_str(found), dims_str(shape)));
  Id space(H5Dget_space(ds), H5Sclose);
  uint64_t sum = 0;
  for (const Segment& seg : segs) {
    Id fspace(H5Scopy(space), H5Sclose), mspace;
    int64_t off = 0;
    if (!I.error.empty() || !h5::select_segment(fspace, seg, mspace, off)) continue;
    I.dog.phase(fmt::format("reading dataset {}", name));
    errno = 0;
    if (H5Dread(ds, H5T_NATIVE_FLOAT, mspace, fspace, I.dxpl, seg.data + off) < 0) {
      const int err = errno;
      const std::string hdf5 = h5::h5_error();
      const int probed = h5::probe_read(I.path, h5::dataset_last_byte(ds, shape));
      I.error = fmt::format("checkpoint {}: {}", I.path,
                            h5::io_failure(I.path, fmt::format("cannot read dataset {}", name), probed ? probed : err, hdf5));
      continue;
    }
    for (const Piece& p : seg.pieces) I.bytes += p.numel * 4;
    sum += pieces_checksum(seg.data, seg.vouch, shape);
  }
  I.dog.idle();
  I.reads.push_back({name, sum, stored_checksum(ds)});
}

void TensorFileReader::verify() {
  Impl& I = *impl_;
  I.throw_if_any_failed(I.error);
  std::vector<uint64_t> mine;
  for (const auto& r : I.reads) mine.push_back(r.sum);
  const std::vector<uint64_t> total = sum_across(*I.agree, mine);
  std::vector<std::string> bad;
  for (size_t i = 0; i < I.reads.size(); ++i) {
    const auto& r = I.reads[i];
    if (!r.stored) bad.push_back(r.name + " (no checksum attribute)");
    else if (*r.stored != total[i])
      bad.push_back(fmt::format("{} (checksum {:016x}, data hashes to {:016x})", r.name, *r.stored, total[i]));
  }
  I.reads.clear();
  if (!bad.empty())
    throw CheckpointError(fmt::format("checkpoint {} is corrupt: {} dataset(s) fail their checksum: {}", I.path,
                                      bad.size(), fmt::join(bad, "; ")));
}

}  // namespace tandem::ckpt
