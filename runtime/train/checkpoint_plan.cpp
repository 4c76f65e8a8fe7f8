// Write ownership for checkpoints (contract in the header).
#include "runtime/train/checkpoint_plan.h"

#include <algorithm>

namespace tandem {

namespace {
std::pair<int64_t, int64_t> dp_slice(int64_t n, int r, int size) {
  return {n * r / size, n * (r + 1) / size};
}
}  // namespace

std::vector<OwnedRange> owned_param_writes(const ParamStore& store, int dp_rank, int dp_size) {
  std::vector<OwnedRange> out;
  const auto& params = store.all();
  for (int i = 0; i < static_cast<int>(params.size()); ++i) {
    if (!params[i].spec.norm_owner) continue;
    auto [b, e] = dp_slice(params[i].numel, dp_rank, dp_size);
    if (b < e) out.push_back({i, b, e});
  }
  return out;
}

std::vector<OwnedRange> owned_state_writes(const ParamStore& store,
                                           const std::vector<AdamWOptimizer::StateView>& views,
                                           int zero, int dp_rank, int dp_size) {
  std::vector<OwnedRange> out;
  const auto& params = store.all();
  for (const auto& v : views) {
    if (!params[v.param].spec.norm_owner) continue;
    int64_t b = v.begin, e = v.end;
    if (zero == 0) {
      auto [sb, se] = dp_slice(params[v.param].numel, dp_rank, dp_size);
      b = std::max(b, sb);
      e = std::min(e, se);
    }
    if (b < e) out.push_back({v.param, b, e, v.packed + (b - v.begin)});
  }
  return out;
}

}  // namespace tandem
