// The RPC front ends of a serving job (contract in serve_front.h).
#include "launch/serve_front.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>

#include "runtime/core/error.h"
#include "runtime/core/file_io.h"

namespace tandem {

namespace {

void write_port_file(const std::string& path, int port, int metrics_port) {
  // Readers never see a partial file; a failure names the OS error and leaves no path.tmp.
  write_file_atomic(path, fmt::format("{}\n{}\n{}\n", port, metrics_port, getpid()));
}

serve::ModelInfo replica_model_info(serve::ReplicaExecutor& exec, const RunConfig& cfg, const std::string& name) {
  const ModelOptions& m = exec.replica().options();
  Mesh& mesh = exec.replica().mesh();
  serve::ModelInfo info;
  info.name = name;
  info.layers = m.layers;
  info.dim = m.dim;
  info.heads = m.heads;
  info.vocab = m.vocab;
  info.seq_len = m.seq_len;
  info.dp = mesh.dp_size();
  info.tp = mesh.tp_size();
  info.pp = mesh.pp_size();
  info.layout = fmt::format("dp {} x tp {} x pp {} (order {})", mesh.dp_size(), mesh.tp_size(), mesh.pp_size(),
                            mesh.order());
  info.kv_block_tokens = cfg.serve.kv_block_tokens;
  info.kv_blocks = cfg.serve.kv_blocks;
  TANDEM_CHECK(cfg.serve.kv_block_tokens == exec.block_tokens() && cfg.serve.kv_blocks == exec.kv_blocks(),
               "engine: serve.kv_blocks {} x {} tokens does not match the cache ({} blocks of {})", cfg.serve.kv_blocks,
               cfg.serve.kv_block_tokens, exec.kv_blocks(), exec.block_tokens());
  return info;
}

}  // namespace

ServeFrontEnds::ServeFrontEnds(MPI_Comm world, int world_rank, const RunConfig& cfg, Mesh& mesh,
                               serve::ReplicaExecutor& exec, const BpeTokenizer* tokenizer,
                               const std::string& config_path, std::function<bool()> stop)
    : world_(world), world_rank_(world_rank), cfg_(cfg), mesh_(mesh), leader_(exec.is_leader()), tok_(tokenizer) {
  TANDEM_CHECK(!leader_ || tokenizer != nullptr, "a serving leader needs its tokenizer");
  serve::EngineOptions o;
  const ServeOptions& s = cfg_.serve;
  o.scheduler.kv_blocks = s.kv_blocks;
  o.scheduler.block_tokens = s.kv_block_tokens;
  o.scheduler.max_seqs = s.max_seqs;
  o.scheduler.max_batch_tokens = s.max_batch_tokens;
  o.scheduler.prefill_chunk = s.prefill_chunk;
  o.scheduler.queue_capacity[0] = s.queue_realtime;
  o.scheduler.queue_capacity[1] = s.queue_batch;
  o.scheduler.seq_len = cfg_.model.seq_len;
  o.recompute = s.recompute;
  o.idle_heartbeat_s = s.idle_heartbeat_s;
  o.stream_interval_s = s.stream_interval_ms / 1e3;
  if (cfg_.parallel.dp > 1) {
    o.stop_requested = [this, stop] { return (stop && stop()) || (peers_ && peers_->stop_received()); };
  } else {
    o.stop_requested = std::move(stop);
  }
  const std::string name = s.name.empty() ? std::filesystem::path(config_path).stem().string() : s.name;
  engine_ = std::make_unique<serve::EngineFront>(replica_model_info(exec, cfg, name), tokenizer, o,
                                                 exec.weights_version());
}

ServeFrontEnds::~ServeFrontEnds() {
  router_.reset();  // the router calls no engine; then the replica's RPC server, then the engine
  if (engine_) engine_->stop_rpc();
}

void ServeFrontEnds::start(const std::string& port_file) {
  const ServeOptions& so = cfg_.serve;
  const ParallelOptions& p = cfg_.parallel;
  const bool routed = p.dp > 1;
  serve::ConnectionLimits limits;
  limits.max_connections = so.max_connections;
  limits.idle_timeout_s = so.idle_timeout_s;
  if (so.max_message_bytes > 0) {
    limits.max_message_bytes = static_cast<size_t>(so.max_message_bytes);
  } else if (leader_) {
    limits.max_message_bytes = serve::max_generate_message_bytes(cfg_.model.seq_len, tok_->max_token_bytes());
  }
  if (leader_) {
    serve::RpcServerOptions ro;
    ro.listen = routed ? so.replica_listen + ":0" : so.listen;
    ro.metrics_listen = routed ? std::string() : so.metrics_listen;
    ro.limits = limits;
    ro.sink_timeout_s = so.sink_timeout_s;
    engine_->start_rpc(ro);
    port_ = engine_->port();
    metrics_port_ = engine_->metrics_port();
  }
  if (routed) {
    const std::string addr =
        leader_ ? fmt::format("{}:{}", advertised_host(so.replica_listen), engine_->port()) : std::string();
    peers_ = std::make_unique<ReplicaPeers>(world_, p.dp, mesh_.dp_rank(), leader_, addr, p.timeout_s);
    if (leader_) spdlog::info("replica {} serving on {}", mesh_.dp_rank(), addr);
    if (world_rank_ == 0) {
      serve::RpcRouterOptions rt;
      rt.listen = so.listen;
      rt.metrics_listen = so.metrics_listen;
      rt.replicas = peers_->addresses();
      rt.limits = limits;
      router_ = std::make_unique<serve::RpcRouter>(rt);
      router_->start();
      port_ = router_->port();
      metrics_port_ = router_->metrics_port();
    }
  }
  if (leader_)
    spdlog::info("serve bounds: messages up to {} bytes, {} connections, idle {} s, token sink {} s",
                 limits.max_message_bytes, limits.max_connections, limits.idle_timeout_s, so.sink_timeout_s);
  if (world_rank_ == 0) {
    spdlog::info("serving on {} (port {}){}{}", so.listen, port_,
                 metrics_port_ ? fmt::format(", metrics on port {}", metrics_port_) : std::string(),
                 routed ? fmt::format(", round-robin over {} replicas", p.dp) : std::string());
    if (!port_file.empty()) write_port_file(port_file, port_, metrics_port_);
  }
}

void ServeFrontEnds::stop() {
  if (peers_) {
    peers_->stop_all();  // rank 0: the other replicas stop while the router still passes replies
    peers_->finish();    // the other leaders: report the stop to rank 0
  }
  if (router_) router_->stop();
  engine_->stop_rpc();
}

}  // namespace tandem
