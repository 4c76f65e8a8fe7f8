// The parallel-HDF5 tensor file writer (contract in tensor_file.h): collective on failure.
#include <fcntl.h>
#include <spdlog/fmt/fmt.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <filesystem>

#include "ckpt/hdf5_util.h"
#include "ckpt/tensor_file.h"
#include "parallel/agreement.h"
#include "parallel/io_watchdog.h"
#include "parallel/mpi_communicator.h"
#include "runtime/core/file_io.h"

namespace tandem::ckpt {

using h5::Id;

namespace {
// Room for HDF5's own structures beyond the data: the superblock and root group, and per dataset
// its object header, link, attributes and group entries (about 1 KiB measured; 4x that here).
constexpr int64_t kMetadataBase = 256 * 1024;
constexpr int64_t kMetadataPerDataset = 4096;
}  // namespace

struct TensorFileWriter::Impl {
  MPI_Comm comm;
  std::string path;
  IoWatchdog dog;
  std::unique_ptr<Communicator> agree;  // watched: every exchange between the ranks
  int rank = 0, size = 1;
  Id file, lcpl, dxpl;
  std::vector<Id> datasets;
  std::vector<uint64_t> sums;
  int64_t bytes = 0;
  std::string error;  // this rank's first failure
  bool closed = false;

  Impl(MPI_Comm c, const std::string& p, double timeout_s)
      : comm(c), path(p), dog(fmt::format("checkpoint file {}", p), timeout_s, [p] { return free_space_note(p); }) {
    dog.phase("joining the other ranks");  // MPI_Comm_dup: collective, and no other watchdog
    agree = make_mpi_communicator(c, "checkpoint-file", timeout_s);
    dog.idle();
    rank = agree->rank();
    size = agree->size();
  }

  // Notes this rank's first failure. `probe` finds its OS error (errno does not survive MPI-IO);
  // `err` is the errno the call left, used when the probe learns nothing.
  template <class Probe>
  void record(const std::string& what, int err, Probe probe) {
    if (!error.empty()) {
      h5::h5_error();  // clear the stack
      return;
    }
    const std::string hdf5 = h5::h5_error();
    const int probed = probe();
    error = h5::io_failure(path, what, probed ? probed : err, hdf5);
  }
  void record(const std::string& what, int err) {
    record(what, err, [this] { return h5::probe_write(path, -1); });
  }
  // Every rank learns whether any failed; on failure frees the space, closes and throws.
  void agree_or_fail();
  [[noreturn]] void fail_close(const GroupFailure& f);
  void remove_file() const { std::remove(path.c_str()); }
  void root_attr(const std::string& name, hid_t type, const void* value);
};

void TensorFileWriter::Impl::agree_or_fail() {
  dog.idle();  // the communicator's own watchdog covers the exchange
  const GroupFailure f = first_failure(*agree, error);
  if (f.failed()) fail_close(f);
}

void TensorFileWriter::Impl::fail_close(const GroupFailure& f) {
  const std::string why = f.describe(size);
  closed = true;
  dog.note("the write had failed: " + why);
  if (rank == 0 && file >= 0) {  // free the space first: the close still writes HDF5's metadata
    if (::truncate(path.c_str(), 0) != 0) {}
    remove_file();
  }
  if (file >= 0) {
    agree->barrier();
    dog.phase("closing the file after the failure");
    datasets.clear();
    H5Fclose(file.release());
    h5::h5_error();
  } else {
    file.release();  // some ranks may hold it open: they abandon it (a collective close on a subset would hang)
    remove_file();
  }
  dog.idle();
  throw CheckpointError(fmt::format("checkpoint {}: {}", path, why));
}

TensorFileWriter::TensorFileWriter(MPI_Comm comm, const std::string& path, double timeout_s)
    : impl_(std::make_unique<Impl>(comm, path, timeout_s)) {
  h5::quiet_hdf5();
  Impl& I = *impl_;
  I.dog.phase("creating the file");
  Id fapl = h5::file_access(comm);
  errno = 0;
  I.file = Id(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose);
  if (I.file < 0) I.record("cannot create the file", errno, [&] { return h5::probe_create(path); });
  I.dog.idle();
  const GroupFailure f = first_failure(*I.agree, I.error);
  if (f.failed()) {
    if (I.file >= 0) I.file.release();  // created on this rank only: abandoned, not closed
    I.fail_close(f);
  }
  I.lcpl = Id(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(I.lcpl, 1);
  I.dxpl = h5::independent_transfer();
}

TensorFileWriter::~TensorFileWriter() {
  Impl& I = *impl_;
  if (I.closed || I.file < 0) return;
  I.datasets.clear();
  if (I.size == 1) {
    I.dog.phase("closing the file");
    H5Fclose(I.file.release());
    h5::h5_error();
  } else {
    I.file.release();  // other ranks may be elsewhere: a collective close could wait forever
  }
  I.remove_file();
}

void TensorFileWriter::reserve(int64_t data_bytes, int datasets) {
  Impl& I = *impl_;
  TANDEM_CHECK(!I.closed, "checkpoint {}: reserve after close", I.path);
  const int64_t want = data_bytes + kMetadataBase + kMetadataPerDataset * static_cast<int64_t>(datasets);
  if (I.rank == 0) {
    I.dog.phase("reserving the file's space");
    const int fd = ::open(I.path.c_str(), O_WRONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
      if (::fallocate(fd, 0, 0, static_cast<off_t>(want)) != 0) err = errno;
      ::close(fd);
    }
    if (err == EOPNOTSUPP || err == ENOSYS) err = 0;  // cannot preallocate: the writes will tell
    if (err != 0) {
      const std::string space = free_space_note(I.path);
      I.error = fmt::format("cannot reserve {:.1f} MiB for the file: {}{}", static_cast<double>(want) / 1048576.0,
                            os_error(err), space.empty() ? "" : " (" + space + ")");
    }
  }
  I.agree_or_fail();
}

void TensorFileWriter::write_tensor(const std::string& name, const Dims& shape, const std::vector<Segment>& segs) {
  Impl& I = *impl_;
  TANDEM_CHECK(!I.closed, "checkpoint {}: write_tensor({}) after close", I.path, name);
  auto dims = h5::hs(shape);
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_layout(dcpl, H5D_CONTIGUOUS);
  H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);  // every element is written once; no fill pass
  I.dog.phase(fmt::format("creating dataset {}", name));
  errno = 0;
  Id ds(H5Dcreate2(I.file, name.c_str(), H5T_IEEE_F32LE, space, I.lcpl, dcpl, H5P_DEFAULT), H5Dclose);
  if (ds < 0) I.record(fmt::format("cannot create dataset {} {}", name, dims_str(shape)), errno);
  uint64_t sum = 0;
  for (const Segment& seg : segs) {
    Id fspace(H5Scopy(space), H5Sclose), mspace;
    int64_t off = 0;
    if (!I.error.empty() || !h5::select_segment(fspace, seg, mspace, off)) continue;
    I.dog.phase(fmt::format("writing dataset {}", name));
    errno = 0;
    if (H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, fspace, I.dxpl, seg.data + off) < 0)
      I.record(fmt::format("cannot write dataset {}", name), errno,
               [&] { return h5::probe_write(I.path, h5::dataset_last_byte(ds, shape)); });
    sum += pieces_checksum(seg.data, seg.pieces, shape);
  }
  I.dog.idle();
  I.sums.push_back(sum);
  I.datasets.push_back(std::move(ds));
  I.bytes += dims_numel(shape) * 4;
}

namespace {
// false (the stack left for the caller) when the attribute cannot be written.
bool write_attr(hid_t obj, const std::string& name, hid_t type, const void* v) {
  if (obj < 0) return false;
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id a(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  return a >= 0 && H5Awrite(a, type, v) >= 0;
}
}  // namespace

void TensorFileWriter::Impl::root_attr(const std::string& name, hid_t type, const void* value) {
  TANDEM_CHECK(!closed, "checkpoint {}: attribute {} after close", path, name);
  dog.phase(fmt::format("writing attribute {}", name));
  errno = 0;
  if (!write_attr(file, name, type, value)) record(fmt::format("cannot write attribute {}", name), errno);
  dog.idle();
}

void TensorFileWriter::attr(const std::string& name, int64_t value) { impl_->root_attr(name, H5T_NATIVE_INT64, &value); }

void TensorFileWriter::attr_uint64(const std::string& name, uint64_t value) {
  impl_->root_attr(name, H5T_NATIVE_UINT64, &value);
}

void TensorFileWriter::attr(const std::string& name, const std::string& value) {
  TANDEM_CHECK(value.size() < 60000, "checkpoint {}: attribute {} of {} bytes is too long", impl_->path, name,
               value.size());
  Id t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t, std::max<size_t>(value.size(), 1));
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  H5Tset_cset(t, H5T_CSET_UTF8);
  const std::string v = value.empty() ? std::string(1, '\0') : value;
  impl_->root_attr(name, t, v.data());
}

int64_t TensorFileWriter::close() {
  Impl& I = *impl_;
  TANDEM_CHECK(!I.closed, "checkpoint {}: closed twice", I.path);
  I.agree_or_fail();
  const std::vector<uint64_t> total = sum_across(*I.agree, I.sums);
  for (size_t i = 0; i < I.datasets.size(); ++i) {
    I.dog.phase("writing the checksums");
    errno = 0;
    if (!write_attr(I.datasets[i], "checksum", H5T_NATIVE_UINT64, &total[i]))
      I.record("cannot write the checksum attributes", errno);
  }
  I.dog.phase("closing the datasets");
  I.datasets.clear();
  I.dog.phase("flushing");
  errno = 0;
  if (H5Fflush(I.file, H5F_SCOPE_GLOBAL) < 0) I.record("cannot flush the file", errno);
  I.agree_or_fail();
  haddr_t eoa = 0;
  if (H5Fget_eoa(I.file, &eoa) < 0) eoa = 0;
  I.dog.phase("closing the file");
  errno = 0;
  if (H5Fclose(I.file.release()) < 0) I.record("cannot close the file", errno);
  I.closed = true;
  I.dog.idle();
  const GroupFailure f = first_failure(*I.agree, I.error);
  if (f.failed()) {
    if (I.rank == 0) I.remove_file();
    throw CheckpointError(fmt::format("checkpoint {}: {}", I.path, f.describe(I.size)));
  }
  std::error_code ec;  // trim what reserve() preallocated beyond the end HDF5 uses
  if (I.rank == 0 && eoa > 0 && std::filesystem::file_size(I.path, ec) > eoa && !ec)
    if (::truncate(I.path.c_str(), static_cast<off_t>(eoa)) != 0) {}
  return I.bytes;
}

}  // namespace tandem::ckpt
