// Checkpointer: saves and loads the training state of this rank's model chunks as one
// layout-independent parallel-HDF5 checkpoint (format: docs/checkpoints.md).
//
// Contract. Every rank of the mesh constructs it over its chunks (model + optimizer) and calls
// save/load together (both are collective over the world communicator).
// save() writes every catalogue tensor (runtime/model/param_catalogue.h) under model/, the
// optimizer's m and v (and fp32 master weights when the run keeps them) per parameter under
// optimizer/{m,v,master}/, unpacked from whatever flat or ZeRO-1 layout the run uses, plus
// the step, weights version, data position, seed, resolved config and format version as root
// attributes. Each rank writes only the elements it owns (runtime/train/checkpoint_plan.h),
// into DIR's temporary file; world rank 0 then publishes it (ckpt/checkpoint_dir.h).
// load() first checks the file against this model on every rank (format version, every
// dataset present with the shape the config implies, no extra model tensors) and throws
// CheckpointError naming each problem before any state changes; then each rank reads its
// own hyperslabs, the ranks verify every dataset's checksum, and the state is installed.
// A checkpoint written under any layout loads under any other. Chunks with opt == nullptr (a
// serving replica) load the weights only; save() needs the optimizers. Fault injection for tests:
// TANDEM_FAULT_SAVE_PAUSE=STEP:SECONDS pauses every rank in the middle of that step's save.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckpt/safetensors.h"
#include "ckpt/tensor_file.h"
#include "parallel/mesh.h"
#include "runtime/model/gpt.h"
#include "runtime/train/adamw_optimizer.h"

namespace tandem {

inline constexpr int64_t kCheckpointFormatVersion = 1;
extern const char* const kTandemVersion;

struct CheckpointChunk {
  Gpt* model = nullptr;
  AdamWOptimizer* opt = nullptr;
};

struct CheckpointMeta {
  int64_t step = 0;
  uint64_t seed = 0;
  std::string config_yaml;
  std::string layout;  // informative: the layout that wrote it
};

struct CheckpointIoStats {
  std::string path;
  int64_t bytes = 0;     // tensor bytes in the file (save) or read by this rank (load)
  double seconds = 0.0;  // wall time of the collective operation
  int64_t step = 0;
  bool had_optimizer_state = true;
};

// Root attributes of a checkpoint (shared by save() and the tools that write one).
void write_checkpoint_attrs(ckpt::TensorFileWriter& w, const ModelOptions& m, const CheckpointMeta& meta,
                            bool has_optimizer_state, bool has_master);
// Throws unless the file is a Tandem checkpoint of the format version this build reads.
void check_format(const ckpt::TensorFileReader& r);
// The model sizes a checkpoint records; throws naming a missing attribute.
ModelOptions checkpoint_model_options(const ckpt::TensorFileReader& r);

// Whole-tensor access for tools (one process, MPI initialised): the model's weights in
// catalogue order with their stored shapes, checksums verified...
std::vector<ckpt::HostTensor> read_model_tensors(const std::string& file, ModelOptions* model);
// ...and a weights-only checkpoint (step meta.step, no optimizer state) published into dir.
std::string write_model_checkpoint(const std::string& dir, const ModelOptions& m,
                                   const std::vector<ckpt::HostTensor>& tensors, const CheckpointMeta& meta);

class Checkpointer {
 public:
  Checkpointer(Backend& be, Mesh& mesh, const ModelOptions& model, int zero, std::vector<CheckpointChunk> chunks);
  CheckpointIoStats save(const std::string& dir, const CheckpointMeta& meta, int keep_last);
  CheckpointIoStats load(const std::string& file);

 private:
  Backend& be_;
  Mesh& mesh_;
  ModelOptions model_;
  int zero_;
  std::vector<CheckpointChunk> chunks_;
};

}  // namespace tandem
