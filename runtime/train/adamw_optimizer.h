// AdamWOptimizer: AdamW over flat ranges of a ParamStore, optionally with its state on the host.
//
// Contract: the optimizer updates the parameter ranges it OWNS (all of them without ZeRO, this
// rank's shard with ZeRO-1) from the gradients in the same ranges, which must be final (already
// reduced across data-parallel ranks) when step() is called. Weight decay applies to ranges of
// parameters with spec.decay. local_grad_sq() sums squared gradients over owned ranges of
// parameters this rank is the norm owner of; the caller all-reduces it across groups to get
// the global norm and passes the clip factor to step().
// offload = true keeps fp32 master weights and both moments in host memory and runs the
// update on the host: gradients are staged to the host, parameters copied back. On the CPU
// backend the same path runs (staging is a memcpy) with identical numerics.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/adamw.h"
#include "runtime/model/param_store.h"

namespace tandem {

struct FlatRange {
  int64_t begin = 0, end = 0;  // elements of the flat value/grad buffers
  bool decay = false;
  bool norm = false;  // counted in the gradient norm on this rank
};

// Splits [begin, end) of the store's flat buffer at parameter boundaries.
std::vector<FlatRange> param_ranges(const ParamStore& store, int64_t begin, int64_t end);

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
  bool offload = false;
};

class AdamWOptimizer {
 public:
  AdamWOptimizer(ParamStore& store, std::vector<FlatRange> owned, const AdamWConfig& cfg);
  double local_grad_sq() const;
  // One update of every owned range at learning rate lr; t counts steps from 1.
  void step(float lr, int64_t t, float grad_scale);
  int64_t state_bytes() const;  // moments (+ master copy when offloaded)
  const std::vector<FlatRange>& owned() const { return owned_; }

  // Per-parameter views of the packed state: parameter `param` (index in the store), its local
  // elements [begin, end), stored from element `packed` of m(), v() (and master()).
  struct StateView {
    int param = 0;
    int64_t begin = 0, end = 0, packed = 0;
  };
  std::vector<StateView> state_views() const { return views_of(store_, owned_); }
  static std::vector<StateView> views_of(const ParamStore& store, const std::vector<FlatRange>& owned);
  Tensor& m() { return m_; }
  Tensor& v() { return v_; }
  bool has_master() const { return master_.defined(); }
  Tensor& master() { return master_; }  // offload only: fp32 master weights on the host
  // After the parameters were loaded: master weights := parameter values (offload only).
  void reset_master_from_values();

 private:
  ParamStore& store_;
  Backend& be_;
  std::vector<FlatRange> owned_;
  AdamWConfig cfg_;
  int64_t owned_numel_ = 0;
  Tensor m_, v_;             // moments, packed over owned ranges (device, or host if offloaded)
  Tensor master_, staging_;  // offload: host master weights and host gradient staging
};

}  // namespace tandem
