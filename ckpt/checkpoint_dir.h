// Checkpoint directory: naming, atomic publication, the `latest` pointer, retention.
//
// Contract. A directory holds step_XXXXXXXX.h5 files (8-digit zero-padded step) and a text file
// `latest` whose one line names the newest complete checkpoint. A save writes its file as
// .step_XXXXXXXX.h5.tmp (temp_path), and only when every rank has closed it does publish()
// (one rank) fsync it, write and fsync `latest.tmp` (naming the new file), rename the file
// into place, fsync the directory, rename `latest.tmp` onto `latest` and fsync again, then
// delete checkpoints beyond keep_last and stale temporaries. A crash at any point therefore
// leaves `latest` naming a complete file (or absent, if no save ever finished). A publish that
// fails leaves no debris: the temporary, `latest.tmp` and a renamed file that `latest` does
// not name are removed (a file that `latest` already named stays). Errors throw
// CheckpointError naming the path and the OS error (strerror).
// check_writable_dir() is the start-up check: it creates the directory and a probe file in it.
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

// Removes the temporaries (.step_*.h5.tmp, latest.tmp) that saves which died left behind.
// Call on one rank, when no save is running.
void remove_stale_temporaries(const std::string& dir);

// Creates `dir` (and its parents) if needed and checks that a file can be created in it;
// throws CheckpointError naming the directory and the OS error.
void check_writable_dir(const std::string& dir);

// The file `latest` names, or nullopt when the directory has no `latest`. Throws when
// `latest` is not one line naming a checkpoint (the message shows control characters such
// as a CR as escapes) or names a file that does not exist.
std::optional<std::string> latest_checkpoint(const std::string& dir);

// DIR (via its `latest`) or a checkpoint FILE -> the file; throws naming what is missing.
std::string resolve_checkpoint(const std::string& dir_or_file);

// Complete checkpoints in the directory, ascending by step.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

// `s` with control and non-ASCII bytes shown as escapes (\r, \t, \x00, ...), for messages.
std::string visible(const std::string& s);

}  // namespace tandem::ckpt
