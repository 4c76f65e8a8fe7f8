// Small-file output that never leaves debris and always names the OS error.
//
// Contract:
//   AtomicFile(path) creates `path + ".tmp"` (truncating one left by a crash). write() appends;
//   sync() makes the temporary complete on disk (fsync, close) without making it visible;
//   commit() syncs if needed, renames the temporary onto `path` and fsyncs the directory, so
//   readers see the old file or the new one, never a partial one. Every failure throws
//   tandem::Error naming the file, the step and strerror(errno) ("No space left on device",
//   "Permission denied") and removes the temporary; so does destroying it uncommitted.
//   write_file_atomic(path, text): the whole of it through an AtomicFile.
//   os_error(err): strerror(err). free_space_note(path): "the file system holding DIR has N MiB
//   free" for the directory of `path` (or "" when it cannot be told); thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tandem {

std::string os_error(int err);
std::string free_space_note(const std::string& path);

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  void sync();
  void commit();
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  [[noreturn]] void fail(const std::string& what, int err);

  std::string path_, tmp_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
};

void write_file_atomic(const std::string& path, std::string_view text);

}  // namespace tandem
