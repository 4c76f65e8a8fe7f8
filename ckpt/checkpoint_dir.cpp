// Checkpoint directory management (contract in the header).
#include "ckpt/checkpoint_dir.h"

#include <fcntl.h>
#include <spdlog/fmt/fmt.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "ckpt/tensor_file.h"
#include "runtime/core/file_io.h"

namespace tandem::ckpt {

namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw CheckpointError(fmt::format("cannot open {} to sync it: {}", path, os_error(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !dir) throw CheckpointError(fmt::format("fsync {}: {}", path, os_error(err)));
}

std::optional<int64_t> step_of(const std::string& name) {
  if (name.size() != 16 || name.rfind("step_", 0) != 0 || name.substr(13) != ".h5") return std::nullopt;
  int64_t step = 0;
  for (size_t i = 5; i < 13; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// The one line of `latest` as written, or nullopt when it cannot be read.
std::optional<std::string> read_latest_line(const fs::path& latest) {
  std::ifstream in(latest, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

}  // namespace

std::string visible(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\r') out += "\\r";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c >= 0x7F) out += fmt::format("\\x{:02x}", c);
    else if (c == '\\') out += "\\\\";
    else out += static_cast<char>(c);
  }
  return out;
}

std::string checkpoint_file_name(int64_t step) { return fmt::format("step_{:08d}.h5", step); }
std::string temp_path(const std::string& dir, int64_t step) {
  return (fs::path(dir) / fmt::format(".step_{:08d}.h5.tmp", step)).string();
}
std::string final_path(const std::string& dir, int64_t step) {
  return (fs::path(dir) / checkpoint_file_name(step)).string();
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (auto s = step_of(e.path().filename().string()); s && e.is_regular_file()) out.emplace_back(*s, e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const bool step_tmp = n.size() > 5 && n.rfind(".step_", 0) == 0 && n.substr(n.size() - 4) == ".tmp";
    if (step_tmp || n == "latest.tmp") fs::remove(e.path(), ec);
  }
}

std::string publish(const std::string& dir, int64_t step, int keep_last) {
  const std::string tmp = temp_path(dir, step), dst = final_path(dir, step), name = checkpoint_file_name(step);
  const fs::path latest = fs::path(dir) / "latest";
  const bool dst_was_latest = read_latest_line(latest) == name;
  bool renamed = false;
  try {
    fsync_path(tmp, false);
    AtomicFile pointer(latest.string());  // latest.tmp: complete before the checkpoint appears
    pointer.write(name + "\n");
    pointer.sync();
    if (std::rename(tmp.c_str(), dst.c_str()) != 0)
      throw CheckpointError(fmt::format("cannot rename {} to {}: {}", tmp, dst, os_error(errno)));
    renamed = true;
    fsync_path(dir, true);
    pointer.commit();
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());
    if (renamed && !dst_was_latest) std::remove(dst.c_str());  // complete, but `latest` never named it
    throw CheckpointError(fmt::format("cannot publish checkpoint {} in {}: {}", name, dir, e.what()));
  }
  std::error_code ec;
  if (keep_last > 0) {
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + keep_last < all.size(); ++i)
      if (all[i].second != dst) fs::remove(all[i].second, ec);
  }
  remove_stale_temporaries(dir);
  return dst;
}

void check_writable_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw CheckpointError(fmt::format("cannot create checkpoint directory {}: {}", dir, ec.message()));
  char host[64] = "";
  ::gethostname(host, sizeof host - 1);
  const std::string probe = (fs::path(dir) / fmt::format(".write_probe.{}.{}", host, ::getpid())).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw CheckpointError(fmt::format("cannot write into checkpoint directory {}: {}", dir, os_error(err)));
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  const fs::path latest = fs::path(dir) / "latest";
  std::error_code ec;
  if (!fs::exists(latest, ec)) return std::nullopt;
  const auto line = read_latest_line(latest);
  if (!line) throw CheckpointError(fmt::format("cannot read {}: {}", latest.string(), os_error(errno)));
  if (!step_of(*line)) {
    const bool crlf = !line->empty() && line->back() == '\r';
    throw CheckpointError(fmt::format("{}: expected one line step_XXXXXXXX.h5, found \"{}\"{}", latest.string(),
                                      visible(*line), crlf ? " (a CRLF line end: was it edited on Windows?)" : ""));
  }
  const std::string file = (fs::path(dir) / *line).string();
  if (!fs::is_regular_file(file, ec))
    throw CheckpointError(fmt::format("{} names {}, which does not exist", latest.string(), file));
  return file;
}

std::string resolve_checkpoint(const std::string& p) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    auto f = latest_checkpoint(p);
    if (!f) throw CheckpointError(fmt::format("{}: no checkpoint here (no '{}/latest')", p, p));
    return *f;
  }
  if (!fs::exists(p, ec)) throw CheckpointError(fmt::format("{}: no such checkpoint file or directory", p));
  return p;
}

}  // namespace tandem::ckpt
