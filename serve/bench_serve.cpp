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

double since(Clock::time_point t0, Clock::time_point t) { return std::chrono::duration<double>(t - t0).count(); }

// What the callbacks of the requests in flight write; shared so a late one never dangles.
struct Tally {
  std::vector<BenchRequestRecord> records;
  Clock::time_point last_done;
};

}  // namespace

BenchServeReport run_bench_serve(const BenchServeOptions& o) {
  TANDEM_CHECK(o.rate > 0 && (o.requests >= 1 || o.duration_s > 0) && o.prompt_min >= 1 &&
                   o.prompt_max >= o.prompt_min && o.output_min >= 1 && o.output_max >= o.output_min &&
                   o.realtime_fraction >= 0 && o.realtime_fraction <= 1,
               "bench-serve: rate {} requests {} duration {} s prompt {}..{} output {}..{} realtime fraction {}",
               o.rate, o.requests, o.duration_s, o.prompt_min, o.prompt_max, o.output_min, o.output_max,
               o.realtime_fraction);
  auto tally = std::make_shared<Tally>();
  RpcClient client(o.server);
  const ModelInfo info = client.model_info();
  TANDEM_CHECK(o.prompt_text.size() > 0 || (info.vocab > 0 && info.seq_len > 1),
               "bench-serve: the server at {} reports vocab {} and seq_len {}: no random prompts possible",
               o.server, info.vocab, info.seq_len);
  std::mt19937_64 rng(o.seed);
  std::exponential_distribution<double> gap(o.rate);
  auto uniform = [&](int lo, int hi) { return lo + static_cast<int>(rng() % static_cast<uint64_t>(hi - lo + 1)); };
  BenchServeReport rep;
  rep.options = o;
  const auto t0 = Clock::now();
  tally->last_done = t0;
  double next = 0.0;
  for (int i = 0; o.duration_s > 0 || i < o.requests; ++i) {
    next += gap(rng);
    if (o.duration_s > 0 && next > o.duration_s) break;
    client.wait_ms((next - since(t0, Clock::now())) * 1000.0);  // the loop serves replies meanwhile
    GenerateRequest r;
    int plen = 0;
    if (!o.prompt_text.empty()) {
      r.prompt_text = o.prompt_text;
    } else {
      plen = std::min(uniform(o.prompt_min, o.prompt_max), info.seq_len - 1);
      for (int j = 0; j < plen; ++j) r.prompt_tokens.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(info.vocab)));
    }
    r.max_tokens = uniform(o.output_min, o.output_max);
    if (plen > 0) r.max_tokens = std::max(1, std::min(r.max_tokens, info.seq_len - plen));
    r.priority = std::uniform_real_distribution<double>(0, 1)(rng) < o.realtime_fraction ? Priority::Realtime
                                                                                         : Priority::Batch;
    r.temperature = o.temperature;
    r.seed = rng();
    const size_t idx = tally->records.size();
    BenchRequestRecord rec;
    rec.priority = r.priority;
    rec.sent_s = since(t0, Clock::now());
    rec.prompt_tokens = plen;
    rec.max_tokens = r.max_tokens;
    tally->records.push_back(rec);
    ++rep.cls[static_cast<int>(r.priority)].sent;
    struct Timing {
      Clock::time_point sent = Clock::now(), first, last;
      int tokens = 0;
    };
    auto tm = std::make_shared<Timing>();
    client.start(
        r,
        [tm](const std::vector<TokenPiece>& ps) {
          const auto now = Clock::now();
          if (tm->tokens == 0) tm->first = now;
          tm->tokens += static_cast<int>(ps.size());
          tm->last = now;
          return true;
        },
        [tally, tm, idx](const RpcClient::GenerateOutcome& out) {
          tally->last_done = Clock::now();
          BenchRequestRecord& rec = tally->records[idx];
          rec.done = true;
          rec.ok = out.ok;
          rec.error_kind = out.error_kind;
          rec.output_tokens = tm->tokens;
          if (out.ok && out.result.prompt_tokens > 0) rec.prompt_tokens = out.result.prompt_tokens;
          if (tm->tokens > 0) rec.ttft_s = std::chrono::duration<double>(tm->first - tm->sent).count();
          if (tm->tokens > 1) rec.tpot_s = std::chrono::duration<double>(tm->last - tm->first).count() / (tm->tokens - 1);
        });
  }
  client.run_until_idle(o.drain_timeout_s);
  std::vector<double> ttft[kNumPriorities], tpot[kNumPriorities];
  for (const BenchRequestRecord& rec : tally->records) {
    const int c = static_cast<int>(rec.priority);
    if (!rec.done) {
      ++rep.unfinished;
      continue;
    }
    if (!rec.ok) {
      ++rep.rejected[static_cast<int>(rec.error_kind)];
      continue;
    }
    ++rep.cls[c].finished;
    rep.output_tokens += rec.output_tokens;
    if (rec.output_tokens > 0) ttft[c].push_back(rec.ttft_s);
    if (rec.output_tokens > 1) tpot[c].push_back(rec.tpot_s);
  }
  rep.records = tally->records;
  rep.seconds = since(t0, tally->last_done);
  for (int c = 0; c < kNumPriorities; ++c) {
    rep.cls[c].ttft = summarize_latencies(ttft[c]);
    rep.cls[c].tpot = summarize_latencies(tpot[c]);
  }
  const int64_t done = rep.cls[0].finished + rep.cls[1].finished;
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
    cls += fmt::format("{}\"{}\": {{\"sent\": {}, \"finished\": {}, \"ttft_s\": {}, \"tpot_s\": {}}}", c ? ", " : "",
                       priority_name(static_cast<Priority>(c)), k.sent, k.finished, lat(k.ttft), lat(k.tpot));
  }
  std::string rej;
  for (int k = 0; k < 5; ++k)
    rej += fmt::format("{}\"{}\": {}", k ? ", " : "", error_kind_name(static_cast<ErrorKind>(k)), r.rejected[k]);
  const BenchServeOptions& o = r.options;
  return fmt::format(
      "{{\"rate\": {}, \"requests\": {}, \"duration_s\": {}, \"realtime_fraction\": {}, \"prompt_tokens\": [{}, {}], "
      "\"output_tokens\": [{}, {}], \"seed\": {}, \"seconds\": {:.3f}, \"output_tokens_per_s\": {:.2f}, "
      "\"requests_per_s\": {:.3f}, \"output_tokens_total\": {}, \"unfinished\": {}, \"classes\": {{{}}}, "
      "\"rejected\": {{{}}}}}\n",
      o.rate, r.records.size(), o.duration_s, o.realtime_fraction, o.prompt_min, o.prompt_max, o.output_min,
      o.output_max, o.seed, r.seconds, r.output_tokens_per_s, r.requests_per_s, r.output_tokens, r.unfinished, cls,
      rej);
}

std::string to_table(const BenchServeReport& r) {
  std::string out = fmt::format("bench-serve: {} requests at {} req/s (Poisson), {:.0f}% realtime, prompt {}..{}, "
                                "output {}..{} tokens\n",
                                r.records.size(), r.options.rate, 100 * r.options.realtime_fraction,
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
  if (r.unfinished > 0) out += fmt::format("; {} without an outcome after {} s", r.unfinished, r.options.drain_timeout_s);
  out += "\n";
  return out;
}

}  // namespace tandem::serve
