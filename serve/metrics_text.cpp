// Prometheus text for the serving statistics (contract in metrics_text.h).
#include "serve/metrics_text.h"

#include <fmt/format.h>

namespace tandem::serve {

std::string prometheus_text(const StatsSnapshot& s, const ModelInfo& m) {
  std::string out;
  auto head = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    head(name, "gauge", help);
    out += fmt::format("{} {}\n", name, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    head(name, "counter", help);
    out += fmt::format("{} {}\n", name, v);
  };
  head("tandem_queue_depth", "gauge", "Requests waiting for admission, per priority class.");
  for (int p = 0; p < kNumPriorities; ++p)
    out += fmt::format("tandem_queue_depth{{class=\"{}\"}} {}\n", priority_name(static_cast<Priority>(p)),
                       s.queue_depth[p]);
  gauge("tandem_active_sequences", "Sequences prefilling or decoding.", static_cast<double>(s.active_sequences));
  gauge("tandem_kv_blocks_used", "KV-cache blocks held by sequences.", static_cast<double>(s.kv_blocks_used));
  gauge("tandem_kv_blocks_free", "KV-cache blocks free.", static_cast<double>(s.kv_blocks_free));
  gauge("tandem_kv_blocks_total", "KV-cache blocks reserved at start-up.", static_cast<double>(s.kv_blocks_total));
  auto summary = [&](const char* name, const char* help, const LatencySummary* per_class) {
    head(name, "summary", help);
    for (int p = 0; p < kNumPriorities; ++p) {
      const char* c = priority_name(static_cast<Priority>(p));
      const LatencySummary& l = per_class[p];
      out += fmt::format("{}{{class=\"{}\",quantile=\"0.5\"}} {}\n", name, c, l.p50);
      out += fmt::format("{}{{class=\"{}\",quantile=\"0.9\"}} {}\n", name, c, l.p90);
      out += fmt::format("{}{{class=\"{}\",quantile=\"0.99\"}} {}\n", name, c, l.p99);
      out += fmt::format("{}_count{{class=\"{}\"}} {}\n", name, c, l.count);
    }
  };
  summary("tandem_ttft_seconds", "Time to first token (recent window), per class.", s.ttft);
  summary("tandem_tpot_seconds", "Time per output token after the first (recent window), per class.", s.tpot);
  gauge("tandem_tokens_per_second", "Output tokens per second over the last 10 s.", s.tokens_per_s);
  gauge("tandem_weights_version", "Optimizer step of the weights serving replies.",
        static_cast<double>(s.weights_version));
  gauge("tandem_training_version", "Optimizer step the trainers have reached (serving while training).",
        static_cast<double>(s.training_version));
  counter("tandem_windows_opened_total", "Safe points at which the engine ran steps (serve.mode windows).",
          static_cast<double>(s.windows_opened));
  gauge("tandem_weights_staleness", "Versions the serving weights are behind the trainers.",
        static_cast<double>(s.staleness));
  counter("tandem_busy_seconds_total", "Seconds the engine spent in steps and weight refreshes.", s.busy_s);
  counter("tandem_weight_syncs_total", "Weight versions received from the trainers (serve.mode dedicated).",
          static_cast<double>(s.weight_syncs));
  counter("tandem_requests_finished_total", "Requests that finished.", static_cast<double>(s.requests_finished));
  counter("tandem_requests_cancelled_total", "Requests cancelled by their client.",
          static_cast<double>(s.requests_cancelled));
  head("tandem_requests_rejected_total", "counter", "Requests refused or failed, by error kind.");
  for (int k = 0; k < 5; ++k)
    out += fmt::format("tandem_requests_rejected_total{{kind=\"{}\"}} {}\n",
                       error_kind_name(static_cast<ErrorKind>(k)), s.rejected[k]);
  counter("tandem_prompt_tokens_total", "Prompt tokens of finished requests.", static_cast<double>(s.prompt_tokens_total));
  counter("tandem_output_tokens_total", "Output tokens generated.", static_cast<double>(s.output_tokens_total));
  head("tandem_model_info", "gauge", "The served model (value 1).");
  out += fmt::format("tandem_model_info{{name=\"{}\",layers=\"{}\",dim=\"{}\",heads=\"{}\",vocab=\"{}\","
                     "seq_len=\"{}\",dp=\"{}\",tp=\"{}\",pp=\"{}\"}} 1\n",
                     m.name, m.layers, m.dim, m.heads, m.vocab, m.seq_len, m.dp, m.tp, m.pp);
  return out;
}

}  // namespace tandem::serve
