// EngineStats: the counters and latency windows behind `stats` and the Prometheus endpoint.
//
// Contract: bounded memory — each latency window keeps the most recent kWindow samples, the
// throughput window the output tokens of the last kRateWindowS seconds (one bucket per 100
// ms). Not thread-safe: the engine's mutex guards it. Times are seconds on one clock.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "serve/serving_api.h"

namespace tandem::serve {

// Nearest-rank p50/p90/p99 of `samples` (count = their number).
LatencySummary summarize_latencies(std::vector<double> samples);

class LatencyWindow {
 public:
  static constexpr size_t kWindow = 4096;
  void add(double seconds);
  LatencySummary summary() const;  // percentiles of the window (nearest rank), total count

 private:
  std::vector<double> ring_;
  size_t next_ = 0;
  int64_t count_ = 0;
};

class EngineStats {
 public:
  static constexpr double kRateWindowS = 10.0;
  void record_tokens(double now, int64_t n);
  void record_ttft(Priority p, double s) { ttft_[static_cast<int>(p)].add(s); }
  void record_tpot(Priority p, double s) { tpot_[static_cast<int>(p)].add(s); }
  void record_prompt_tokens(int64_t n) { prompt_total_ += n; }  // of a sequence that finished
  // Fills the latency, throughput and token-total fields (queues and blocks come from
  // elsewhere; how requests ended is counted by the RPC front end, serve/rpc_generate.h).
  void fill(double now, StatsSnapshot& s) const;

 private:
  std::array<LatencyWindow, kNumPriorities> ttft_, tpot_;
  std::deque<std::pair<int64_t, int64_t>> rate_;  // (100 ms bucket, tokens)
  int64_t prompt_total_ = 0, output_total_ = 0;
};

}  // namespace tandem::serve
