// bench-serve: an open-loop load generator against a running server. Requests arrive as a
// Poisson process at `rate` per second (arrivals never wait for completions), a
// `realtime_fraction` of them realtime, prompts of uniform [prompt_min, prompt_max] random
// token ids and max_tokens uniform in [output_min, output_max]. All requests run
// concurrently from one client event loop. The report gives, per class, TTFT and time per
// output token (after the first) at p50/p90/p99, throughput, and rejections by error kind.
#pragma once

#include <cstdint>
#include <string>

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
};

struct BenchClassReport {
  int64_t sent = 0, finished = 0, output_tokens = 0;
  LatencySummary ttft, tpot;
};

struct BenchServeReport {
  BenchServeOptions options;
  BenchClassReport cls[kNumPriorities];
  int64_t rejected[5] = {0, 0, 0, 0, 0};
  double seconds = 0.0;             // first arrival -> last completion
  double output_tokens_per_s = 0.0, requests_per_s = 0.0;
  int64_t output_tokens = 0;
};

BenchServeReport run_bench_serve(const BenchServeOptions& o);
std::string to_json(const BenchServeReport& r);
std::string to_table(const BenchServeReport& r);

}  // namespace tandem::serve
