// merge_replica_stats: one StatsSnapshot for a serving job of several data-parallel replicas.
//
// Contract: counts, gauges and rates (queue depths, active sequences, KV blocks, tokens/s,
// finished/cancelled/rejected requests, token totals, latency sample counts) are summed over
// the replicas; each latency percentile is the worst (largest) among replicas that have
// samples, so a slow replica is never averaged away; weights_version is the oldest replica's,
// training_version the newest, and staleness the worst replica's own (training_version -
// weights_version of one replica's snapshot). The replicas' snapshots are taken at slightly
// different moments, so the merged staleness is <= the merged training_version -
// weights_version, not always equal to it (each replica's own entry is exact).
// `replicas` of the result holds the inputs (without their own nested lists).
#pragma once

#include <vector>

#include "serve/serving_api.h"

namespace tandem::serve {

StatsSnapshot merge_replica_stats(const std::vector<StatsSnapshot>& replicas);

}  // namespace tandem::serve
