// `tandem generate` and `tandem bench-serve` (contract in client_commands.h).
#include "launch/client_commands.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "runtime/core/error.h"
#include "serve/bench_serve.h"
#include "serve/rpc_client.h"

namespace tandem {

namespace {

struct Flags {
  int argc;
  char** argv;
  int i = 0;
  std::string value(const std::string& flag) {
    if (i + 1 >= argc) throw ConfigError(fmt::format("{} needs a value", flag));
    return argv[++i];
  }
};

double to_double(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used == v.size()) return d;
  } catch (const std::exception&) {
  }
  throw ConfigError(fmt::format("{}: '{}' is not a number", flag, v));
}

int64_t to_int(const std::string& flag, const std::string& v) {
  const double d = to_double(flag, v);
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    throw ConfigError(fmt::format("{}: '{}' is not an integer", flag, v));
  return static_cast<int64_t>(d);
}

void range(const std::string& flag, const std::string& v, int* lo, int* hi) {
  const size_t c = v.find(':');
  *lo = static_cast<int>(to_int(flag, v.substr(0, c)));
  *hi = c == std::string::npos ? *lo : static_cast<int>(to_int(flag, v.substr(c + 1)));
}

}  // namespace

int generate_command(int argc, char** argv) {
  std::string server;
  serve::GenerateRequest r;
  Flags f{argc, argv};
  for (; f.i < argc; ++f.i) {
    const std::string s = argv[f.i];
    if (s == "--server") server = f.value(s);
    else if (s == "--prompt") r.prompt_text = f.value(s);
    else if (s == "--max-tokens") r.max_tokens = static_cast<int32_t>(to_int(s, f.value(s)));
    else if (s == "--temperature") r.temperature = static_cast<float>(to_double(s, f.value(s)));
    else if (s == "--top-k") r.top_k = static_cast<int32_t>(to_int(s, f.value(s)));
    else if (s == "--top-p") r.top_p = static_cast<float>(to_double(s, f.value(s)));
    else if (s == "--seed") r.seed = static_cast<uint64_t>(to_int(s, f.value(s)));
    else if (s == "--stop") r.stop.push_back(f.value(s));
    else if (s == "--deadline") r.deadline_s = to_double(s, f.value(s));
    else if (s == "--priority") {
      const std::string p = f.value(s);
      if (p == "realtime") r.priority = serve::Priority::Realtime;
      else if (p == "batch") r.priority = serve::Priority::Batch;
      else throw ConfigError(fmt::format("--priority: '{}' is not realtime or batch", p));
    } else {
      throw ConfigError(fmt::format("unknown option '{}' for tandem generate", s));
    }
  }
  if (server.empty()) throw ConfigError("tandem generate needs --server HOST:PORT");
  if (r.prompt_text.empty()) throw ConfigError("tandem generate needs --prompt TEXT");
  serve::RpcClient client(server);
  auto out = client.generate(r, [](const std::vector<serve::TokenPiece>& pieces) {
    for (const auto& p : pieces) std::fwrite(p.text.data(), 1, p.text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  if (!out.ok) {
    std::fprintf(stderr, "tandem generate: %s: %s%s\n", serve::error_kind_name(out.error_kind),
                 out.error_message.c_str(),
                 out.retry_after_s > 0 ? fmt::format(" (retry after {:.2f} s)", out.retry_after_s).c_str() : "");
    return 10 + static_cast<int>(out.error_kind);
  }
  const auto& res = out.result;
  std::fprintf(stderr, "finish: %s, %d tokens (prompt %d), ttft %.1f ms, total %.1f ms, weights version %lld, replica %d\n",
               serve::finish_reason_name(res.finish), res.output_tokens, res.prompt_tokens, 1e3 * res.ttft_s,
               1e3 * res.total_s, static_cast<long long>(res.weights_version), res.replica);
  return 0;
}

int bench_serve_command(int argc, char** argv) {
  serve::BenchServeOptions o;
  std::string json;
  Flags f{argc, argv};
  for (; f.i < argc; ++f.i) {
    const std::string s = argv[f.i];
    if (s == "--server") o.server = f.value(s);
    else if (s == "--rate") o.rate = to_double(s, f.value(s));
    else if (s == "--requests") o.requests = static_cast<int>(to_int(s, f.value(s)));
    else if (s == "--realtime-fraction") o.realtime_fraction = to_double(s, f.value(s));
    else if (s == "--prompt-tokens") range(s, f.value(s), &o.prompt_min, &o.prompt_max);
    else if (s == "--output-tokens") range(s, f.value(s), &o.output_min, &o.output_max);
    else if (s == "--temperature") o.temperature = static_cast<float>(to_double(s, f.value(s)));
    else if (s == "--seed") o.seed = static_cast<uint64_t>(to_int(s, f.value(s)));
    else if (s == "--json") json = f.value(s);
    else throw ConfigError(fmt::format("unknown option '{}' for tandem bench-serve", s));
  }
  const serve::BenchServeReport rep = serve::run_bench_serve(o);
  std::fputs(serve::to_table(rep).c_str(), stdout);
  if (!json.empty()) {
    std::ofstream out(json);
    if (!out) throw Error(fmt::format("bench-serve: cannot write {}", json));
    out << serve::to_json(rep);
    std::printf("wrote %s\n", json.c_str());
  }
  return 0;
}

}  // namespace tandem
