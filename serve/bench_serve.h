// bench-serve: an open-loop load generator against a running server. Requests arrive as a
// Poisson process at `rate` per second from `seed` (arrivals never wait for completions):
// `requests` of them, or as many as arrive in `duration_s` when that is > 0. A
// `realtime_fraction` of them are realtime; prompts are uniform [prompt_min, prompt_max]
// random token ids < the server's vocab (or `prompt_text` when set), max_tokens uniform in
// [output_min, output_max] (clamped to the server's seq_len). All requests run concurrently
// from one client event loop (kj timers pace the arrivals). The report gives, per class, TTFT
// (send -> first token) and time per output token after the first at p50/p90/p99, throughput
// (first arrival -> last completion), rejections by error kind, and one record per request.
// Throws std::runtime_error when the server cannot be reached or the options are invalid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "serve/serving_api.h"

namespace tandem::serve {

struct BenchServeOptions {
  std::string server = "127.0.0.1:7411";
  double rate = 4.0;  // requests per second
  int requests = 64;
  double realtime_fraction = 0.25;
  int prompt_min = 8, prompt_max = 64;
  int output_min = 8, output_max = 32;
  float temperature = 0.0f;
  uint64_t seed = 1;
  double duration_s = 0.0;      // > 0: arrivals for this long instead of `requests`
  std::string prompt_text;      // non-empty: every prompt is this text (prompt_min/max unused)
  double drain_timeout_s = 300; // after the last arrival, wait at most this for completions
};

struct BenchRequestRecord {
  Priority priority = Priority::Batch;
  double sent_s = 0.0;  // since the benchmark started
  int32_t prompt_tokens = 0, max_tokens = 0, output_tokens = 0;
  bool ok = false, done = false;  // done: an outcome arrived before the drain timeout
  ErrorKind error_kind = ErrorKind::Internal;
  double ttft_s = 0.0, tpot_s = 0.0;  // tpot_s: 0 with fewer than 2 tokens
};

struct BenchClassReport {
  int64_t sent = 0, finished = 0;
  LatencySummary ttft, tpot;
};

struct BenchServeReport {
  BenchServeOptions options;
  BenchClassReport cls[kNumPriorities];
  int64_t rejected[5] = {0, 0, 0, 0, 0};
  double seconds = 0.0;             // first arrival -> last completion
  double output_tokens_per_s = 0.0, requests_per_s = 0.0;
  int64_t output_tokens = 0;
  int64_t unfinished = 0;  // no outcome within drain_timeout_s
  std::vector<BenchRequestRecord> records;
};

BenchServeReport run_bench_serve(const BenchServeOptions& o);
std::string to_json(const BenchServeReport& r);   // the summary (not the per-request records)
std::string to_table(const BenchServeReport& r);  // human-readable, one row per class

}  // namespace tandem::serve
