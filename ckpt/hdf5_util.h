// Internal helpers of ckpt/tensor_file*.cpp over the HDF5 C API (not part of any interface).
//
// Contract: Id owns one HDF5 handle and closes it with its function (release() gives it up
// without closing: a collective close that other ranks may never join). h5_error() is HDF5's
// error stack as one line (and clears it); quiet_hdf5() stops HDF5 printing it.
// The OS error of a failed HDF5 call: MPI-IO reports a failed pwrite/pread as a bare MPI error
// and errno does not survive it, so probe_write()/probe_read() repeat a one-byte transfer of
// their own at `offset` of the file (a write: then, if that works, one byte past its end; the
// file of a failed save is discarded anyway) and return its errno (0: it worked);
// probe_create() tries to create the file. io_failure() words a failed call as
// "WHAT: OS ERROR (HDF5: ...)" from such an errno (0: "the OS error is not known", with the
// free space of the file's file system, the likeliest cause); take h5_error() before probing.
// select_segment() sets a segment's file and memory selections (false: it has no pieces).
#pragma once

#include <hdf5.h>

#include <string>
#include <utility>
#include <vector>

#include "ckpt/tensor_file.h"

namespace tandem::ckpt::h5 {

struct Id {
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
  hid_t release() { return std::exchange(id, -1); }
};

std::string h5_error();
void quiet_hdf5();
std::string io_failure(const std::string& path, const std::string& what, int err, const std::string& hdf5);
int probe_write(const std::string& path, int64_t offset);
int probe_read(const std::string& path, int64_t offset);
int probe_create(const std::string& path);
// The file offset of a dataset's last byte (its data is contiguous), or -1 when not allocated.
int64_t dataset_last_byte(hid_t ds, const Dims& shape);
std::vector<hsize_t> hs(const Dims& d);
Id file_access(MPI_Comm comm);
Id independent_transfer();
bool select_segment(hid_t fspace, const Segment& seg, Id& mspace, int64_t& offset);

}  // namespace tandem::ckpt::h5
