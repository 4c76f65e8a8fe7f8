// Checkpoint directory management (contract in the header).
#include "ckpt/checkpoint_dir.h"

#include <fcntl.h>
#include <spdlog/fmt/fmt.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ckpt/tensor_file.h"

namespace tandem::ckpt {

namespace fs = std::filesystem;

namespace {

void fsync_path(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw CheckpointError(fmt::format("cannot open {} to sync it: {}", path, std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !dir) throw CheckpointError(fmt::format("fsync {}: {}", path, std::strerror(err)));
}

void rename_into_place(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    throw CheckpointError(fmt::format("cannot rename {} to {}: {}", from, to, std::strerror(errno)));
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

}  // namespace

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

std::string publish(const std::string& dir, int64_t step, int keep_last) {
  const std::string tmp = temp_path(dir, step), dst = final_path(dir, step);
  fsync_path(tmp, false);
  rename_into_place(tmp, dst);
  fsync_path(dir, true);
  const std::string latest = (fs::path(dir) / "latest").string(), latest_tmp = latest + ".tmp";
  {
    std::ofstream out(latest_tmp, std::ios::trunc);
    out << checkpoint_file_name(step) << "\n";
    out.flush();
    if (!out) throw CheckpointError(fmt::format("cannot write {}", latest_tmp));
  }
  fsync_path(latest_tmp, false);
  rename_into_place(latest_tmp, latest);
  fsync_path(dir, true);
  std::error_code ec;
  if (keep_last > 0) {
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + keep_last < all.size(); ++i)
      if (all[i].second != dst) fs::remove(all[i].second, ec);
  }
  for (const auto& e : fs::directory_iterator(dir, ec)) {  // temporaries of saves that died
    const std::string n = e.path().filename().string();
    if (n.size() > 5 && n[0] == '.' && n.rfind(".step_", 0) == 0 && n.substr(n.size() - 4) == ".tmp")
      fs::remove(e.path(), ec);
  }
  return dst;
}

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  const fs::path latest = fs::path(dir) / "latest";
  std::error_code ec;
  if (!fs::exists(latest, ec)) return std::nullopt;
  std::ifstream in(latest);
  std::string name;
  std::getline(in, name);
  if (!step_of(name))
    throw CheckpointError(fmt::format("{}: expected a line step_XXXXXXXX.h5, found '{}'", latest.string(), name));
  const std::string file = (fs::path(dir) / name).string();
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
