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
// load() first checks the file against this model on every rank (its root attributes, by
// read_checkpoint_header: format version, checksum, agreement; the model sizes; every
// dataset present with the shape the config implies, no extra model tensors) and throws
// CheckpointError naming each problem before any state changes; then each rank reads its
// own hyperslabs, the ranks verify every dataset's checksum, and the state is installed.
// A checkpoint written under any layout loads under any other. Chunks with opt == nullptr (a
// serving replica) load the weights only; save() needs the optimizers. Fault injection for tests:
// TANDEM_FAULT_SAVE_PAUSE=STEP:SECONDS pauses every rank in the middle of that step's save;
// TANDEM_FAULT_NO_RESERVE=1 skips reserving the file's space (as on a file system that cannot
// preallocate), so that a full disk fails in the middle of the writes.
// Faults: every I/O failure ends the save (or load) on every rank with the same CheckpointError,
// naming the file and the OS error (ckpt/tensor_file.h); a save that fails leaves no file and
// `latest` untouched; every exchange between the ranks and every HDF5 call is watched
// (parallel.timeout_s). Rank 0 removes the temporaries of saves that died before it saves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckpt/safetensors.h"
#include "ckpt/tensor_file.h"
#include "parallel/communicator.h"
#include "parallel/mesh.h"
#include "runtime/model/gpt.h"
#include "runtime/train/adamw_optimizer.h"
#include "runtime/train/checkpoint_header.h"

namespace tandem {

struct CheckpointChunk {
  Gpt* model = nullptr;
  AdamWOptimizer* opt = nullptr;
};

struct CheckpointIoStats {
  std::string path;
  int64_t bytes = 0;     // tensor bytes in the file (save) or read by this rank (load)
  double seconds = 0.0;  // wall time of the collective operation
  int64_t step = 0;
  bool had_optimizer_state = true;
};

// Whole-tensor access for tools (one process, MPI initialised): the model's weights in
// catalogue order with their stored shapes, checksums verified...
std::vector<ckpt::HostTensor> read_model_tensors(const std::string& file, ModelOptions* model);
// ...and a weights-only checkpoint (step meta.step, no optimizer state) published into dir.
std::string write_model_checkpoint(const std::string& dir, const ModelOptions& m,
                                   const std::vector<ckpt::HostTensor>& tensors, const CheckpointMeta& meta);

class Checkpointer {
 public:
  Checkpointer(Backend& be, Mesh& mesh, const ModelOptions& model, int zero, std::vector<CheckpointChunk> chunks);
  ~Checkpointer();
  CheckpointIoStats save(const std::string& dir, const CheckpointMeta& meta, int keep_last);
  CheckpointIoStats load(const std::string& file);

 private:
  Backend& be_;
  Mesh& mesh_;
  ModelOptions model_;
  int zero_;
  std::vector<CheckpointChunk> chunks_;
  std::unique_ptr<Communicator> comm_;  // watched MPI over the mesh's world: the agreements
};

}  // namespace tandem
