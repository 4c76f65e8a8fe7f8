// Merging per-replica serving statistics (contract in stats_merge.h).
#include "serve/stats_merge.h"

#include <algorithm>

namespace tandem::serve {

namespace {
void merge_latency(LatencySummary& into, const LatencySummary& l) {
  if (l.count > 0) {
    into.p50 = std::max(into.p50, l.p50);
    into.p90 = std::max(into.p90, l.p90);
    into.p99 = std::max(into.p99, l.p99);
  }
  into.count += l.count;
}
}  // namespace

StatsSnapshot merge_replica_stats(const std::vector<StatsSnapshot>& replicas) {
  StatsSnapshot m;
  bool first = true;
  for (const StatsSnapshot& r : replicas) {
    for (int p = 0; p < kNumPriorities; ++p) {
      m.queue_depth[p] += r.queue_depth[p];
      merge_latency(m.ttft[p], r.ttft[p]);
      merge_latency(m.tpot[p], r.tpot[p]);
    }
    m.active_sequences += r.active_sequences;
    m.kv_blocks_used += r.kv_blocks_used;
    m.kv_blocks_free += r.kv_blocks_free;
    m.kv_blocks_total += r.kv_blocks_total;
    m.tokens_per_s += r.tokens_per_s;
    m.weights_version = first ? r.weights_version : std::min(m.weights_version, r.weights_version);
    m.training_version = std::max(m.training_version, r.training_version);
    m.windows_opened += r.windows_opened;
    m.staleness = std::max(m.staleness, r.staleness);
    m.weight_syncs = std::max(m.weight_syncs, r.weight_syncs);
    m.busy_s += r.busy_s;
    m.requests_finished += r.requests_finished;
    m.requests_cancelled += r.requests_cancelled;
    for (int k = 0; k < 5; ++k) m.rejected[k] += r.rejected[k];
    m.prompt_tokens_total += r.prompt_tokens_total;
    m.output_tokens_total += r.output_tokens_total;
    m.replicas.push_back(r);
    m.replicas.back().replicas.clear();
    first = false;
  }
  return m;
}

}  // namespace tandem::serve
