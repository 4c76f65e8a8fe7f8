// Serving statistics windows (contract in engine_stats.h).
#include "serve/engine_stats.h"

#include <algorithm>
#include <cmath>

namespace tandem::serve {

void LatencyWindow::add(double seconds) {
  if (ring_.size() < kWindow) ring_.push_back(seconds);
  else ring_[next_] = seconds;
  next_ = (next_ + 1) % kWindow;
  ++count_;
}

LatencySummary summarize_latencies(std::vector<double> v) {
  LatencySummary s;
  s.count = static_cast<int64_t>(v.size());
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto q = [&](double f) {
    const size_t i = static_cast<size_t>(std::ceil(f * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
  };
  s.p50 = q(0.50);
  s.p90 = q(0.90);
  s.p99 = q(0.99);
  return s;
}

LatencySummary LatencyWindow::summary() const {
  LatencySummary s = summarize_latencies(ring_);
  s.count = count_;
  return s;
}

void EngineStats::record_tokens(double now, int64_t n) {
  output_total_ += n;
  const auto bucket = static_cast<int64_t>(now * 10.0);
  if (!rate_.empty() && rate_.back().first == bucket) rate_.back().second += n;
  else rate_.emplace_back(bucket, n);
  while (!rate_.empty() && rate_.front().first < bucket - static_cast<int64_t>(kRateWindowS * 10))
    rate_.pop_front();
}

void EngineStats::fill(double now, StatsSnapshot& s) const {
  for (int p = 0; p < kNumPriorities; ++p) {
    s.ttft[p] = ttft_[p].summary();
    s.tpot[p] = tpot_[p].summary();
  }
  const auto bucket = static_cast<int64_t>(now * 10.0);
  int64_t tokens = 0;
  for (const auto& [b, n] : rate_)
    if (b >= bucket - static_cast<int64_t>(kRateWindowS * 10)) tokens += n;
  s.tokens_per_s = static_cast<double>(tokens) / std::min(kRateWindowS, std::max(now, 0.1));
  s.prompt_tokens_total = prompt_total_;
  s.output_tokens_total = output_total_;
}

}  // namespace tandem::serve
