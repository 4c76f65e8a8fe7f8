// Internal HDF5 helpers of the tensor files (contract in hdf5_util.h).
#include "ckpt/hdf5_util.h"

#include <fcntl.h>
#include <spdlog/fmt/fmt.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "runtime/core/file_io.h"

namespace tandem::ckpt::h5 {

namespace {
herr_t collect_error(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  char maj[128] = "", min[128] = "";
  H5Eget_msg(e->maj_num, nullptr, maj, sizeof maj);
  H5Eget_msg(e->min_num, nullptr, min, sizeof min);
  if (n < 3) *out += fmt::format("{}{} ({}: {}, {})", out->empty() ? "" : "; ", e->desc ? e->desc : "", e->func_name, maj, min);
  return 0;
}
}  // namespace

std::string h5_error() {
  std::string s;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &s);
  H5Eclear2(H5E_DEFAULT);
  return s.empty() ? "no HDF5 detail" : s;
}

void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::string io_failure(const std::string& path, const std::string& what, int err, const std::string& hdf5) {
  if (err != 0) return fmt::format("{}: {} (HDF5: {})", what, os_error(err), hdf5);
  const std::string space = free_space_note(path);
  return fmt::format("{}: the OS error is not known{} (HDF5: {})", what, space.empty() ? "" : "; " + space, hdf5);
}

int probe_write(const std::string& path, int64_t offset) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  const char zero = 0;
  int err = 0;
  if (offset >= 0 && ::pwrite(fd, &zero, 1, static_cast<off_t>(offset)) != 1) err = errno ? errno : EIO;
  if (err == 0) {
    const off_t end = ::lseek(fd, 0, SEEK_END);
    if (end >= 0 && ::pwrite(fd, &zero, 1, end + 65536) != 1) err = errno ? errno : EIO;
  }
  ::close(fd);
  return err;
}

int probe_read(const std::string& path, int64_t offset) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char byte = 0;
  const int err = ::pread(fd, &byte, 1, static_cast<off_t>(std::max<int64_t>(offset, 0))) < 0 ? errno : 0;
  ::close(fd);
  return err;
}

int probe_create(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno == EEXIST ? 0 : errno;
  ::close(fd);
  ::unlink(path.c_str());
  return 0;
}

int64_t dataset_last_byte(hid_t ds, const Dims& shape) {
  if (ds < 0) return -1;
  const haddr_t at = H5Dget_offset(ds);
  H5Eclear2(H5E_DEFAULT);
  if (at == HADDR_UNDEF) return -1;
  return static_cast<int64_t>(at) + dims_numel(shape) * 4 - 1;
}

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

}  // namespace tandem::ckpt::h5
