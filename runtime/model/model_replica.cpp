// ModelReplica: builds this rank's model chunks for its place in the (dp, tp, pp) mesh.
#include "runtime/model/model_replica.h"

#include <algorithm>

#include "parallel/pipeline_schedule.h"

namespace tandem {

std::pair<int, int> stage_layers(int layers, int vstages, int v) {
  const int base = layers / vstages, extra = layers % vstages;
  const int first = v * base + std::min(v, extra);
  return {first, base + (v < extra ? 1 : 0)};
}

ModelReplica::ModelReplica(Backend& be, Mesh& mesh, const ModelOptions& model,
                           const ParallelOptions& par, int nchunks, bool inference_only,
                           Precision precision)
    : be_(be), mesh_(mesh), model_(model) {
  TANDEM_CHECK(nchunks >= 1, "model chunks per rank must be >= 1, got {}", nchunks);
  const int vstages = mesh.pp_size() * nchunks;
  TANDEM_CHECK(vstages <= model.layers, "{} pipeline stages x {} chunks need at least {} layers, model.layers={}",
               mesh.pp_size(), nchunks, vstages, model.layers);
  for (int c = 0; c < nchunks; ++c) {
    const int v = virtual_stage(mesh.pp_size(), mesh.pp_rank(), c);
    auto [first, count] = stage_layers(model.layers, vstages, v);
    StageLayout layout{first, count, v == 0, v == vstages - 1};
    auto gpt = std::make_unique<Gpt>(be, model, layout, mesh.tp(), par.recompute, mesh.dp_size(),
                                     !inference_only, precision);
    gpt->set_offload_block_inputs(par.offload);
    chunks_.push_back(std::move(gpt));
  }
}

std::vector<Gpt*> ModelReplica::chunk_ptrs() {
  std::vector<Gpt*> out;
  for (auto& c : chunks_) out.push_back(c.get());
  return out;
}

void ModelReplica::init(uint64_t seed) {
  for (auto& c : chunks_) c->init(seed);
}

void ModelReplica::refresh_bf16() {
  for (auto& c : chunks_) c->params().refresh_bf16();
}

int64_t ModelReplica::parameters() const {
  int64_t n = 0;
  for (const auto& c : chunks_) n += c->params().numel();
  return n;
}

}  // namespace tandem
