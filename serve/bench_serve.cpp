// Open-loop serving load generator (contract in bench_serve.h).
#include "serve/bench_serve.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "runtime/core/error.h"
#include "serve/engine_stats.h"
#include "serve/rpc_client.h"

namespace tandem::serve {

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

BenchServeReport run_bench_serve(const BenchServeOptions& o) {
  TANDEM_CHECK(o.rate > 0 && o.requests >= 1 && o.prompt_min >= 1 && o.prompt_max >= o.prompt_min &&
                   o.output_min >= 1 && o.output_max >= o.output_min && o.realtime_fraction >= 0 &&
                   o.realtime_fraction <= 1,
               "bench-serve: rate {} requests {} prompt {}..{} output {}..{} realtime fraction {}", o.rate,
               o.requests, o.prompt_min, o.prompt_max, o.output_min, o.output_max, o.realtime_fraction);
  RpcClient client(o.server);
  const ModelInfo info = client.model_info();
  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.rate);
  BenchServeReport rep;
  rep.options = o;
  std::vector<double> ttft[kNumPriorities], tpot[kNumPriorities];
  struct Live {
    Clock::time_point sent, first, last;
    int tokens = 0;
    Priority p;
  };
  const auto t0 = Clock::now();
  double next = 0.0;
  auto last_done = t0;
  for (int i = 0; i < o.requests; ++i) {
    next += gap(rng);
    const double wait = next - std::chrono::duration<double>(Clock::now() - t0).count();
    if (wait > 0) client.wait_ms(wait * 1000.0);
    GenerateRequest r;
    const int plen = o.prompt_min + static_cast<int>(rng() % static_cast<uint64_t>(o.prompt_max - o.prompt_min + 1));
    for (int j = 0; j < plen; ++j) r.prompt_tokens.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(info.vocab)));
    r.max_tokens = o.output_min + static_cast<int>(rng() % static_cast<uint64_t>(o.output_max - o.output_min + 1));
    r.max_tokens = std::max(1, std::min(r.max_tokens, info.seq_len - plen));
    r.priority = std::uniform_real_distribution<double>(0, 1)(rng) < o.realtime_fraction ? Priority::Realtime
                                                                                         : Priority::Batch;
    r.temperature = o.temperature;
    r.seed = rng();
    auto live = std::make_shared<Live>();
    live->sent = Clock::now();
    live->p = r.priority;
    ++rep.cls[static_cast<int>(r.priority)].sent;
    client.start(
        r,
        [live](const std::vector<TokenPiece>& ps) {
          const auto now = Clock::now();
          if (live->tokens == 0) live->first = now;
          live->tokens += static_cast<int>(ps.size());
          live->last = now;
          return true;
        },
        [&, live](const RpcClient::GenerateOutcome& out) {
          last_done = Clock::now();
          const int c = static_cast<int>(live->p);
          if (!out.ok) {
            ++rep.rejected[static_cast<int>(out.error_kind)];
            return;
          }
          ++rep.cls[c].finished;
          rep.output_tokens += live->tokens;
          rep.cls[c].output_tokens += live->tokens;
          if (live->tokens > 0) ttft[c].push_back(std::chrono::duration<double>(live->first - live->sent).count());
          if (live->tokens > 1)
            tpot[c].push_back(std::chrono::duration<double>(live->last - live->first).count() / (live->tokens - 1));
        });
  }
  client.run_until_idle();
  rep.seconds = std::chrono::duration<double>(last_done - t0).count();
  for (int c = 0; c < kNumPriorities; ++c) {
    rep.cls[c].ttft = summarize_latencies(ttft[c]);
    rep.cls[c].tpot = summarize_latencies(tpot[c]);
  }
  int64_t done = rep.cls[0].finished + rep.cls[1].finished;
  rep.output_tokens_per_s = rep.seconds > 0 ? static_cast<double>(rep.output_tokens) / rep.seconds : 0.0;
  rep.requests_per_s = rep.seconds > 0 ? static_cast<double>(done) / rep.seconds : 0.0;
  return rep;
}

std::string to_json(const BenchServeReport& r) {
  std::string cls;
  for (int c = 0; c < kNumPriorities; ++c) {
    const BenchClassReport& k = r.cls[c];
    auto lat = [](const LatencySummary& l) {
      return fmt::format("{{\"p50\": {:.6f}, \"p90\": {:.6f}, \"p99\": {:.6f}, \"count\": {}}}", l.p50, l.p90, l.p99, l.count);
    };
    cls += fmt::format("{}\"{}\": {{\"sent\": {}, \"finished\": {}, \"output_tokens\": {}, \"ttft_s\": {}, \"tpot_s\": {}}}",
                       c ? ", " : "", priority_name(static_cast<Priority>(c)), k.sent, k.finished, k.output_tokens,
                       lat(k.ttft), lat(k.tpot));
  }
  std::string rej;
  for (int k = 0; k < 5; ++k)
    rej += fmt::format("{}\"{}\": {}", k ? ", " : "", error_kind_name(static_cast<ErrorKind>(k)), r.rejected[k]);
  const BenchServeOptions& o = r.options;
  return fmt::format(
      "{{\"rate\": {}, \"requests\": {}, \"realtime_fraction\": {}, \"prompt_tokens\": [{}, {}], "
      "\"output_tokens\": [{}, {}], \"seconds\": {:.3f}, \"output_tokens_per_s\": {:.2f}, "
      "\"requests_per_s\": {:.3f}, \"classes\": {{{}}}, \"rejected\": {{{}}}}}\n",
      o.rate, o.requests, o.realtime_fraction, o.prompt_min, o.prompt_max, o.output_min, o.output_max, r.seconds,
      r.output_tokens_per_s, r.requests_per_s, cls, rej);
}

std::string to_table(const BenchServeReport& r) {
  std::string out = fmt::format("bench-serve: {} requests at {} req/s (Poisson), {:.0f}% realtime, prompt {}..{}, "
                                "output {}..{} tokens\n",
                                r.options.requests, r.options.rate, 100 * r.options.realtime_fraction,
                                r.options.prompt_min, r.options.prompt_max, r.options.output_min, r.options.output_max);
  out += fmt::format("{:<9} {:>5} {:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9}\n", "class", "sent", "done",
                     "TTFT p50", "p90", "p99", "TPOT p50", "p90", "p99");
  for (int c = 0; c < kNumPriorities; ++c) {
    const BenchClassReport& k = r.cls[c];
    out += fmt::format("{:<9} {:>5} {:>5} | {:>7.1f}ms {:>7.1f}ms {:>7.1f}ms | {:>7.1f}ms {:>7.1f}ms {:>7.1f}ms\n",
                       priority_name(static_cast<Priority>(c)), k.sent, k.finished, 1e3 * k.ttft.p50, 1e3 * k.ttft.p90,
                       1e3 * k.ttft.p99, 1e3 * k.tpot.p50, 1e3 * k.tpot.p90, 1e3 * k.tpot.p99);
  }
  out += fmt::format("throughput: {:.1f} output tokens/s, {:.2f} requests/s over {:.1f} s\n", r.output_tokens_per_s,
                     r.requests_per_s, r.seconds);
  out += "rejected:";
  for (int k = 0; k < 5; ++k) out += fmt::format(" {}={}", error_kind_name(static_cast<ErrorKind>(k)), r.rejected[k]);
  out += "\n";
  return out;
}

}  // namespace tandem::serve
