// Checkpoint directory: naming, atomic publication, the `latest` pointer, retention.
//
// Contract. A directory holds step_XXXXXXXX.h5 files (8-digit zero-padded step) and a text file
// `latest` whose one line names the newest complete checkpoint. A save writes its file as
// .step_XXXXXXXX.h5.tmp (temp_path), and only when every rank has closed it does publish()
// (one rank) fsync it, rename it into place, fsync the directory, replace `latest` the same
// way (write latest.tmp, fsync, rename) and then delete checkpoints beyond keep_last and stale
// temporaries. A crash at any point therefore leaves `latest` naming a complete file (or
// absent, if no save ever finished). Errors throw CheckpointError naming the path and errno.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tandem::ckpt {

std::string checkpoint_file_name(int64_t step);  // "step_00000010.h5"
std::string temp_path(const std::string& dir, int64_t step);
std::string final_path(const std::string& dir, int64_t step);

// Renames the finished temporary into place and points `latest` at it; keeps the newest
// keep_last checkpoints (0: all). Returns the final path. Call on one rank only.
std::string publish(const std::string& dir, int64_t step, int keep_last);

// The file `latest` names, or nullopt when the directory has no `latest`. Throws when
// `latest` names a file that does not exist.
std::optional<std::string> latest_checkpoint(const std::string& dir);

// DIR (via its `latest`) or a checkpoint FILE -> the file; throws naming what is missing.
std::string resolve_checkpoint(const std::string& dir_or_file);

// Complete checkpoints in the directory, ascending by step.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

}  // namespace tandem::ckpt
