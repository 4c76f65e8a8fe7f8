// ModelReplica: this rank's part of one model replica — the backend, the mesh, and the model
// chunks (one Gpt per virtual pipeline stage this rank holds) with their parameters. The
// trainer and the serving engine share it: the trainer updates its weights in the optimizer
// step, the engine reads them between steps (at safe points) to answer requests.
//
// Contract: every rank of the mesh constructs it with identical options (collective only in
// the sense that the chunks' tp communicators are used later). Chunk c holds virtual stage
// virtual_stage(pp, pp_rank, c) of pp * chunks; layers are split by stage_layers(). The
// weights version is the optimizer step of the weights the chunks hold (0 = initial); the
// trainer bumps it after every step and a checkpoint load sets it. Not thread-safe: the rank's
// compute thread owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "parallel/mesh.h"
#include "parallel/parallel_options.h"
#include "runtime/model/gpt.h"
#include "runtime/model/model_options.h"

namespace tandem {

// Layers [first, first + count) of virtual stage v out of `vstages` (as even as possible,
// earlier stages take the remainder).
std::pair<int, int> stage_layers(int layers, int vstages, int v);

class ModelReplica {
 public:
  // nchunks: model chunks per rank (the interleaved schedule's `chunks`, else 1).
  // inference_only: no gradient buffers (a serving replica; it never runs backward).
  // precision: the training GEMMs' arithmetic (Precision::BF16 keeps a bf16 copy of the
  // weights; see gpt.h). Serving replicas are fp32.
  ModelReplica(Backend& be, Mesh& mesh, const ModelOptions& model, const ParallelOptions& par,
               int nchunks, bool inference_only = false, Precision precision = Precision::F32);

  Backend& backend() { return be_; }
  Mesh& mesh() { return mesh_; }
  const ModelOptions& options() const { return model_; }
  int num_chunks() const { return static_cast<int>(chunks_.size()); }
  Gpt& chunk(int c) { return *chunks_.at(static_cast<size_t>(c)); }
  std::vector<Gpt*> chunk_ptrs();
  int virtual_stages() const { return mesh_.pp_size() * num_chunks(); }

  void init(uint64_t seed);  // layout-independent initial weights in every chunk
  // After the fp32 weights changed (optimizer step, checkpoint load): refresh every chunk's
  // bf16 copy (a no-op at fp32).
  void refresh_bf16();
  int64_t parameters() const;  // elements held by this rank

  int64_t weights_version() const { return version_; }
  void set_weights_version(int64_t v) { version_ = v; }

 private:
  Backend& be_;
  Mesh& mesh_;
  ModelOptions model_;
  std::vector<std::unique_ptr<Gpt>> chunks_;
  int64_t version_ = 0;
};

}  // namespace tandem
