// The root attributes of a checkpoint (docs/checkpoints.md): written together, read at full
// width, covered by a checksum and checked against each other before a load trusts them.
//
// Contract.
// - write_checkpoint_attrs() writes every root attribute of format version 2 and, last,
//   `attrs_checksum`: text_checksum (ckpt/tensor_file.h) of root_attrs_text(), the lines
//   "NAME=VALUE\n" of the attributes of kChecksummedRootAttrs in that order (integers in
//   decimal, strings as their bytes).
// - read_checkpoint_header() reads them back (integers of any stored width; one that does not
//   fit is a problem, never a wrap) and throws one CheckpointError that names every problem:
//   an unknown format or format_version (versions 1 and 2 are read; version 1 files predate
//   attrs_checksum and get the other checks only), a missing or mistyped attribute,
//   attrs_checksum disagreeing with the attributes, and attributes that disagree with each
//   other: weights_version and data_position must equal step, adam_step must be step (0 for a
//   weights-only checkpoint), step must lie in [0, kMaxCheckpointStep] (steps count in 32
//   bits), flags must be 0 or 1, model sizes in [1, 2^31 - 1].
// - dataset_problems() lists what the datasets of a file lack for a model: missing datasets,
//   other shapes or dtypes, model tensors the model does not have (optimizer state only when
//   `with_optimizer`). A load refuses any; `tandem ckpt inspect` reports them against the
//   file's own model sizes.
#pragma once

#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "ckpt/tensor_file.h"
#include "runtime/model/gpt.h"

namespace tandem {

inline constexpr int64_t kCheckpointFormatVersion = 2;
inline constexpr int64_t kOldestCheckpointFormatVersion = 1;
inline constexpr int64_t kMaxCheckpointStep = INT32_MAX - 1;  // the trainer resumes at step + 1, an int
extern const char* const kTandemVersion;
extern const char* const kCheckpointStates[3];  // "m", "v", "master": optimizer/<state>/...

// Root attributes covered by attrs_checksum, in the order they are hashed.
extern const std::vector<std::string> kChecksummedRootAttrs;

struct CheckpointMeta {
  int64_t step = 0;
  uint64_t seed = 0;
  std::string config_yaml;
  std::string layout;  // informative: the layout that wrote it
};

struct CheckpointHeader {
  int64_t format_version = 0;
  std::string tandem_version, config, layout;
  int64_t step = 0, weights_version = 0, data_position = 0, adam_step = 0, seed = 0;
  bool has_optimizer_state = false, has_master_weights = false;
  ModelOptions model;  // layers, dim, heads, vocab, seq_len
};

void write_checkpoint_attrs(ckpt::TensorFileWriter& w, const ModelOptions& m, const CheckpointMeta& meta,
                            bool has_optimizer_state, bool has_master);
CheckpointHeader read_checkpoint_header(const ckpt::TensorFileReader& r);
std::vector<std::string> dataset_problems(const ckpt::TensorFileReader& r, const ModelOptions& m,
                                          bool with_optimizer);

}  // namespace tandem
