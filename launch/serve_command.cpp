// The serve command: config -> mesh -> model replica <- checkpoint -> engine + RPC server;
// with parallel.dp > 1 every replica's leader serves its own replica on serve.replica_listen
// and world rank 0 also runs the router on serve.listen (launch/serve_replicas.h).
#include "launch/serve_command.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/checkpoint_dir.h"
#include "launch/config.h"
#include "launch/rank_setup.h"
#include "launch/serve_replicas.h"
#include "parallel/mesh.h"
#include "runtime/core/error.h"
#include "runtime/data/bpe_tokenizer.h"
#include "runtime/model/model_replica.h"
#include "runtime/train/checkpointer.h"
#include "serve/engine.h"
#include "serve/replica_executor.h"
#include "serve/rpc_router.h"
#include "serve/rpc_server.h"

namespace tandem {

namespace {

// The one process-wide flag a signal handler may touch (lock-free atomic).
std::atomic<bool> g_stop_signal{false};
extern "C" void on_stop_signal(int) { g_stop_signal = true; }

struct ServeArgs {
  std::string config, checkpoint, port_file;
  std::vector<std::string> overrides;
};

ServeArgs parse_serve_args(int argc, char** argv) {
  ServeArgs a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) throw ConfigError(fmt::format("{} needs a value", flag));
      return argv[++i];
    };
    if (s == "--set") a.overrides.push_back(value("--set"));
    else if (s.rfind("--set=", 0) == 0) a.overrides.push_back(s.substr(6));
    else if (s == "--checkpoint") a.checkpoint = value("--checkpoint");
    else if (s == "--port-file") a.port_file = value("--port-file");
    else if (!s.empty() && s[0] == '-') throw ConfigError(fmt::format("unknown option '{}' for tandem serve", s));
    else if (a.config.empty()) a.config = s;
    else throw ConfigError(fmt::format("unexpected argument '{}' (config already given: {})", s, a.config));
  }
  if (a.config.empty()) throw ConfigError("tandem serve needs a CONFIG file (e.g. configs/quickstart.yaml)");
  if (a.checkpoint.empty())
    throw ConfigError("tandem serve needs --checkpoint DIR (a checkpoint directory or file)");
  return a;
}

void write_port_file(const std::string& path, int port, int metrics_port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n" << metrics_port << "\n" << getpid() << "\n";
  }
  std::filesystem::rename(tmp, path);  // readers never see a partial file
}

serve::EngineOptions engine_options(const RunConfig& cfg, const std::string& config_path) {
  serve::EngineOptions o;
  const ServeOptions& s = cfg.serve;
  o.scheduler.kv_blocks = s.kv_blocks;
  o.scheduler.block_tokens = s.kv_block_tokens;
  o.scheduler.max_seqs = s.max_seqs;
  o.scheduler.max_batch_tokens = s.max_batch_tokens;
  o.scheduler.prefill_chunk = s.prefill_chunk;
  o.scheduler.queue_capacity[0] = s.queue_realtime;
  o.scheduler.queue_capacity[1] = s.queue_batch;
  o.scheduler.seq_len = cfg.model.seq_len;
  o.recompute = s.recompute;
  o.idle_heartbeat_s = s.idle_heartbeat_s;
  o.model_name = s.name.empty() ? std::filesystem::path(config_path).stem().string() : s.name;
  o.stop_requested = [] { return g_stop_signal.load(); };
  return o;
}

}  // namespace

int serve_command(MpiEnv& env, int argc, char** argv) {
  RunConfig cfg;
  ServeArgs args;
  std::string file;
  auto check = [&] {
    args = parse_serve_args(argc, argv);
    cfg = load_config(args.config, args.overrides);
    check_layout(cfg, env.world_size());
    file = ckpt::resolve_checkpoint(args.checkpoint);
  };
  if (!config_ok_everywhere(check, env.rank())) return 2;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);

  BackendOptions bo;
  bo.device = cfg.train.device;
  bo.threads = cfg.train.threads == 0 ? default_threads(env.local_size()) : cfg.train.threads;
  auto backend = make_backend(bo_for_rank(bo, env));
  const ParallelOptions& p = cfg.parallel;
  Mesh mesh(env.world(), p.dp, p.tp, p.pp, p.order, backend->kind(), p.timeout_s, backend->cuda());
  ModelReplica replica(*backend, mesh, cfg.model, p, 1);
  std::vector<CheckpointChunk> chunks;
  for (int c = 0; c < replica.num_chunks(); ++c) chunks.push_back({&replica.chunk(c), nullptr});
  Checkpointer ck(*backend, mesh, cfg.model, 0, chunks);
  const CheckpointIoStats ls = ck.load(file);
  replica.set_weights_version(ls.step);
  spdlog::info("tandem serve {} | {} | weights of step {} from {} ({:.1f} MB in {:.2f} s)", args.config,
               mesh.describe(), ls.step, file, ls.bytes / 1e6, ls.seconds);

  const ServeOptions& so = cfg.serve;
  serve::ReplicaExecutor exec(replica, so.kv_blocks, so.kv_block_tokens, p.timeout_s);
  spdlog::info("KV cache: {} blocks x {} tokens, {:.1f} MB on this rank", so.kv_blocks, so.kv_block_tokens,
               static_cast<double>(exec.kv_bytes()) / 1e6);
  std::unique_ptr<BpeTokenizer> tok;
  if (exec.is_leader()) tok = std::make_unique<BpeTokenizer>(BpeTokenizer::load(cfg.data.tokenizer));
  serve::EngineOptions eo = engine_options(cfg, args.config);
  const bool routed = p.dp > 1;
  std::unique_ptr<ReplicaPeers> peers;  // routed only
  if (routed) {
    eo.stop_requested = [&peers] { return g_stop_signal.load() || (peers && peers->stop_received()); };
  }
  serve::Engine engine(exec, tok.get(), eo);
  std::unique_ptr<serve::RpcServer> server;
  if (exec.is_leader()) {
    serve::RpcServerOptions ro;
    ro.listen = routed ? so.replica_listen + ":0" : so.listen;
    ro.metrics_listen = routed ? std::string() : so.metrics_listen;
    server = std::make_unique<serve::RpcServer>(engine, ro);
    server->start();
  }
  std::unique_ptr<serve::RpcRouter> router;
  int port = server ? server->port() : 0, metrics_port = server ? server->metrics_port() : 0;
  if (routed) {
    const std::string addr =
        server ? fmt::format("{}:{}", advertised_host(so.replica_listen), server->port()) : std::string();
    peers = std::make_unique<ReplicaPeers>(env.world(), p.dp, mesh.dp_rank(), exec.is_leader(), addr, p.timeout_s);
    if (server) spdlog::info("replica {} serving on {}", mesh.dp_rank(), addr);
    if (env.rank() == 0) {
      serve::RpcRouterOptions rt;
      rt.listen = so.listen;
      rt.metrics_listen = so.metrics_listen;
      rt.replicas = peers->addresses();
      router = std::make_unique<serve::RpcRouter>(rt);
      router->start();
      port = router->port();
      metrics_port = router->metrics_port();
    }
  }
  if (env.rank() == 0) {
    spdlog::info("serving on {} (port {}){}{}", so.listen, port,
                 metrics_port ? fmt::format(", metrics on port {}", metrics_port) : std::string(),
                 routed ? fmt::format(", round-robin over {} replicas", p.dp) : std::string());
    if (!args.port_file.empty()) write_port_file(args.port_file, port, metrics_port);
  }
  engine.run();
  if (peers) {
    peers->stop_all();  // rank 0: the other replicas stop while the router still passes replies
    peers->finish();    // the other leaders: report the stop to rank 0
  }
  if (router) router->stop();
  if (server) server->stop();
  spdlog::info("serve: stopped");
  return 0;
}

}  // namespace tandem
