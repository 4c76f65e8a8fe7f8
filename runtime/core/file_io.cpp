// Atomic small files and OS error text (contract in file_io.h).
#include "runtime/core/file_io.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "runtime/core/error.h"

namespace tandem {

namespace fs = std::filesystem;

std::string os_error(int err) { return std::strerror(err); }

std::string free_space_note(const std::string& path) {
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return "";
  const double free_mib = static_cast<double>(st.f_bavail) * static_cast<double>(st.f_frsize) / 1048576.0;
  return fmt::format("the file system holding {} has {:.1f} MiB free", dir.string(), free_mib);
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    throw Error(fmt::format("cannot create {}: {}", tmp_, os_error(err)));
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::fail(const std::string& what, int err) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  std::remove(tmp_.c_str());
  committed_ = true;  // nothing left to remove
  throw Error(fmt::format("{}: {}", what, os_error(err)));
}

void AtomicFile::write(const void* data, size_t bytes) {
  TANDEM_CHECK(fd_ >= 0 && !committed_, "AtomicFile {}: write after sync or commit", path_);
  const char* p = static_cast<const char*>(data);
  for (size_t done = 0; done < bytes;) {
    const ssize_t n = ::write(fd_, p + done, bytes - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail(fmt::format("cannot write {} ({} of {} bytes written)", tmp_, written_ + done, written_ + bytes),
           n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  written_ += bytes;
}

void AtomicFile::sync() {
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0) fail(fmt::format("cannot sync {}", tmp_), errno);
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail(fmt::format("cannot close {}", tmp_), errno);
}

void AtomicFile::commit() {
  TANDEM_CHECK(!committed_, "AtomicFile {}: committed twice", path_);
  sync();
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail(fmt::format("cannot rename {} to {}", tmp_, path_), errno);
  committed_ = true;
  fs::path dir = fs::path(path_).parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {  // best effort: some file systems cannot sync a directory
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, std::string_view text) {
  AtomicFile f(path);
  f.write(text);
  f.commit();
}

}  // namespace tandem
