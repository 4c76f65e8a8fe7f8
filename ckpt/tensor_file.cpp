// Parallel-HDF5 tensor files (contract in the header).
#include "ckpt/tensor_file.h"

#include <hdf5.h>
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>

#include "runtime/core/hash.h"

namespace tandem::ckpt {

namespace {

herr_t collect_error(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  char maj[128] = "", min[128] = "";
  H5Eget_msg(e->maj_num, nullptr, maj, sizeof maj);
  H5Eget_msg(e->min_num, nullptr, min, sizeof min);
  if (n < 3) *out += fmt::format("{}{} ({}: {}, {})", out->empty() ? "" : "; ", e->desc ? e->desc : "", e->func_name, maj, min);
  return 0;
}

// HDF5's own error stack as one line (and clears it).
std::string h5_error() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? "no HDF5 detail" : s;
}

void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw CheckpointError(fmt::format("checkpoint {}: {}: {}", file, what, h5_error()));
}

struct Id {  // closes an HDF5 handle with the given function
  hid_t id = -1;
  herr_t (*close)(hid_t) = nullptr;
  Id() = default;
  Id(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  Id(Id&& o) noexcept : id(o.id), close(o.close) { o.id = -1; }
  Id& operator=(Id&& o) noexcept {
    std::swap(id, o.id);
    std::swap(close, o.close);
    return *this;
  }
  ~Id() {
    if (id >= 0 && close) close(id);
  }
  operator hid_t() const { return id; }
};

std::vector<hsize_t> hs(const Dims& d) { return std::vector<hsize_t>(d.begin(), d.end()); }

Id file_access(MPI_Comm comm) {
  Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  return fapl;
}

Id independent_transfer() {
  Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_INDEPENDENT);
  return dxpl;
}

// File and memory selections of one segment (the memory space starts at data + offset);
// false when it has no pieces.
bool select_segment(hid_t fspace, const Segment& seg, Id& mspace, int64_t& offset) {
  if (seg.pieces.empty()) return false;
  H5Sselect_none(fspace);
  if (seg.pieces.size() == 1) {  // one contiguous run: a plain memory space at its offset
    const Piece& p = seg.pieces[0];
    auto st = hs(p.slab.start), sd = hs(p.slab.stride), ct = hs(p.slab.count), bl = hs(p.slab.block);
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, st.data(), sd.data(), ct.data(), bl.data());
    hsize_t n = static_cast<hsize_t>(p.numel);
    mspace = Id(H5Screate_simple(1, &n, nullptr), H5Sclose);
    offset = p.local_offset;
    return true;
  }
  offset = 0;
  int64_t extent = 0;
  for (const Piece& p : seg.pieces) {
    auto st = hs(p.slab.start), sd = hs(p.slab.stride), ct = hs(p.slab.count), bl = hs(p.slab.block);
    H5Sselect_hyperslab(fspace, H5S_SELECT_OR, st.data(), sd.data(), ct.data(), bl.data());
    extent = std::max(extent, p.local_offset + p.numel);
  }
  hsize_t n = static_cast<hsize_t>(extent);
  mspace = Id(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H5Sselect_none(mspace);
  for (const Piece& p : seg.pieces) {
    hsize_t st = static_cast<hsize_t>(p.local_offset), one = 1, bl = static_cast<hsize_t>(p.numel);
    H5Sselect_hyperslab(mspace, H5S_SELECT_OR, &st, &one, &one, &bl);
  }
  return true;
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

uint64_t element_hash(int64_t i, float v) {
  return splitmix64((static_cast<uint64_t>(i) << 32) ^ std::bit_cast<uint32_t>(v));
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

// ------------------------------------------------------------------ writer

struct TensorFileWriter::Impl {
  MPI_Comm comm;
  std::string path;
  Id file, lcpl, dxpl;
  std::vector<Id> datasets;
  std::vector<uint64_t> sums;
  int64_t bytes = 0;
};

TensorFileWriter::TensorFileWriter(MPI_Comm comm, const std::string& path) : impl_(std::make_unique<Impl>()) {
  quiet_hdf5();
  Impl& I = *impl_;
  I.comm = comm;
  I.path = path;
  Id fapl = file_access(comm);
  I.file = Id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose);
  if (I.file < 0) fail(path, "cannot create the file");
  I.lcpl = Id(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(I.lcpl, 1);
  I.dxpl = independent_transfer();
}

TensorFileWriter::~TensorFileWriter() = default;

void TensorFileWriter::write_tensor(const std::string& name, const Dims& shape, const std::vector<Segment>& segs) {
  Impl& I = *impl_;
  TANDEM_CHECK(I.file >= 0, "checkpoint {}: write_tensor({}) after close", I.path, name);
  auto dims = hs(shape);
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_layout(dcpl, H5D_CONTIGUOUS);
  H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);  // every element is written once; no fill pass
  Id ds(H5Dcreate2(I.file, name.c_str(), H5T_IEEE_F32LE, space, I.lcpl, dcpl, H5P_DEFAULT), H5Dclose);
  if (ds < 0) fail(I.path, fmt::format("cannot create dataset {} {}", name, dims_str(shape)));
  uint64_t sum = 0;
  for (const Segment& seg : segs) {
    Id fspace(H5Scopy(space), H5Sclose), mspace;
    int64_t off = 0;
    if (!select_segment(fspace, seg, mspace, off)) continue;
    if (H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, fspace, I.dxpl, seg.data + off) < 0)
      fail(I.path, fmt::format("cannot write dataset {}", name));
    sum += pieces_checksum(seg.data, seg.pieces, shape);
  }
  I.sums.push_back(sum);
  I.datasets.push_back(std::move(ds));
  I.bytes += dims_numel(shape) * 4;
}

namespace {
void write_attr(hid_t obj, const std::string& file, const std::string& name, hid_t type, const void* v) {
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id a(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (a < 0 || H5Awrite(a, type, v) < 0) fail(file, fmt::format("cannot write attribute {}", name));
}
}  // namespace

void TensorFileWriter::attr(const std::string& name, int64_t value) {
  write_attr(impl_->file, impl_->path, name, H5T_NATIVE_INT64, &value);
}
void TensorFileWriter::attr(const std::string& name, const std::string& value) {
  TANDEM_CHECK(value.size() < 60000, "checkpoint {}: attribute {} of {} bytes is too long", impl_->path, name,
               value.size());
  Id t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, std::max<size_t>(value.size(), 1));
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  H5Tset_cset(t, H5T_CSET_UTF8);
  std::string v = value.empty() ? std::string(1, '\0') : value;
  write_attr(impl_->file, impl_->path, name, t, v.data());
}

int64_t TensorFileWriter::close() {
  Impl& I = *impl_;
  std::vector<uint64_t> total(I.sums.size());
  MPI_Allreduce(I.sums.data(), total.data(), static_cast<int>(I.sums.size()), MPI_UINT64_T, MPI_SUM, I.comm);
  for (size_t i = 0; i < I.datasets.size(); ++i)
    write_attr(I.datasets[i], I.path, "checksum", H5T_NATIVE_UINT64, &total[i]);
  I.datasets.clear();
  if (H5Fflush(I.file, H5F_SCOPE_GLOBAL) < 0) fail(I.path, "cannot flush");
  hid_t f = I.file.id;
  I.file.id = -1;
  if (H5Fclose(f) < 0) fail(I.path, "cannot close");
  return I.bytes;
}

// ------------------------------------------------------------------ reader

struct TensorFileReader::Impl {
  MPI_Comm comm;
  std::string path;
  Id file, dxpl;
  std::vector<std::string> names;
  struct Read {
    std::string name;
    uint64_t sum = 0;                 // this rank's share
    std::optional<uint64_t> stored;   // the dataset's checksum attribute
  };
  std::vector<Read> reads;  // in read order
  int64_t bytes = 0;
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
}  // namespace

TensorFileReader::TensorFileReader(MPI_Comm comm, const std::string& path) : impl_(std::make_unique<Impl>()) {
  quiet_hdf5();
  Impl& I = *impl_;
  I.comm = comm;
  I.path = path;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw CheckpointError(fmt::format("checkpoint {}: no such file", path));
  const auto size = std::filesystem::file_size(path, ec);
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw CheckpointError(fmt::format("checkpoint {} ({} bytes): not an HDF5 file (no HDF5 signature; corrupt?)",
                                      path, static_cast<uint64_t>(size)));
  }
  Id fapl = file_access(comm);
  I.file = Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  if (I.file < 0)
    fail(path, fmt::format("cannot open ({} bytes; truncated or corrupt?)", static_cast<uint64_t>(size)));
  I.dxpl = independent_transfer();
  if (H5Lvisit(I.file, H5_INDEX_NAME, H5_ITER_INC, visit_link, &I.names) < 0) fail(path, "cannot list datasets");
  std::sort(I.names.begin(), I.names.end());
}

TensorFileReader::~TensorFileReader() = default;
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

std::optional<int64_t> TensorFileReader::attr_int(const std::string& name) const {
  if (H5Aexists(impl_->file, name.c_str()) <= 0) return std::nullopt;
  Id a(H5Aopen(impl_->file, name.c_str(), H5P_DEFAULT), H5Aclose);
  int64_t v = 0;
  if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) fail(impl_->path, fmt::format("attribute {} is not an integer", name));
  return v;
}

std::optional<std::string> TensorFileReader::attr_string(const std::string& name) const {
  if (H5Aexists(impl_->file, name.c_str()) <= 0) return std::nullopt;
  Id a(H5Aopen(impl_->file, name.c_str(), H5P_DEFAULT), H5Aclose);
  Id t(H5Aget_type(a), H5Tclose);
  if (H5Tget_class(t) != H5T_STRING) fail(impl_->path, fmt::format("attribute {} is not a string", name));
  if (H5Tis_variable_str(t) > 0) {
    char* s = nullptr;
    Id mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt, H5T_VARIABLE);
    if (H5Aread(a, mt, &s) < 0) fail(impl_->path, fmt::format("cannot read attribute {}", name));
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string buf(H5Tget_size(t), '\0');
  if (H5Aread(a, t, buf.data()) < 0) fail(impl_->path, fmt::format("cannot read attribute {}", name));
  buf.resize(std::strlen(buf.c_str()));
  return buf;
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
    if (!select_segment(fspace, seg, mspace, off)) continue;
    if (H5Dread(ds, H5T_NATIVE_FLOAT, mspace, fspace, I.dxpl, seg.data + off) < 0)
      fail(I.path, fmt::format("cannot read dataset {}", name));
    for (const Piece& p : seg.pieces) I.bytes += p.numel * 4;
    sum += pieces_checksum(seg.data, seg.vouch, shape);
  }
  I.reads.push_back({name, sum, stored_checksum(ds)});
}

void TensorFileReader::verify() {
  Impl& I = *impl_;
  std::vector<uint64_t> mine, total(I.reads.size());
  for (const auto& r : I.reads) mine.push_back(r.sum);
  MPI_Allreduce(mine.data(), total.data(), static_cast<int>(mine.size()), MPI_UINT64_T, MPI_SUM, I.comm);
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
