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

}  // namespace

ServeFrontEnds::ServeFrontEnds(MPI_Comm world, int world_rank, const RunConfig& cfg, Mesh& mesh,
                               bool leader)
    : world_(world), world_rank_(world_rank), cfg_(cfg), mesh_(mesh), leader_(leader) {}

ServeFrontEnds::~ServeFrontEnds() = default;

serve::EngineOptions ServeFrontEnds::engine_options(const std::string& config_path,
                                                    std::function<bool()> stop) {
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
  o.model_name = s.name.empty() ? std::filesystem::path(config_path).stem().string() : s.name;
  if (cfg_.parallel.dp > 1) {
    o.stop_requested = [this, stop] { return (stop && stop()) || (peers_ && peers_->stop_received()); };
  } else {
    o.stop_requested = std::move(stop);
  }
  return o;
}

void ServeFrontEnds::start(serve::Engine& engine, const BpeTokenizer* tokenizer, const std::string& port_file) {
  const ServeOptions& so = cfg_.serve;
  const ParallelOptions& p = cfg_.parallel;
  const bool routed = p.dp > 1;
  serve::ConnectionLimits limits;
  limits.max_connections = so.max_connections;
  limits.idle_timeout_s = so.idle_timeout_s;
  if (so.max_message_bytes > 0) {
    limits.max_message_bytes = static_cast<size_t>(so.max_message_bytes);
  } else if (leader_) {
    TANDEM_CHECK(tokenizer != nullptr, "a serving leader needs its tokenizer");
    limits.max_message_bytes = serve::max_generate_message_bytes(cfg_.model.seq_len, tokenizer->max_token_bytes());
  }
  if (leader_) {
    serve::RpcServerOptions ro;
    ro.listen = routed ? so.replica_listen + ":0" : so.listen;
    ro.metrics_listen = routed ? std::string() : so.metrics_listen;
    ro.limits = limits;
    ro.sink_timeout_s = so.sink_timeout_s;
    server_ = std::make_unique<serve::RpcServer>(engine, ro);
    server_->start();
    port_ = server_->port();
    metrics_port_ = server_->metrics_port();
  }
  if (routed) {
    const std::string addr =
        server_ ? fmt::format("{}:{}", advertised_host(so.replica_listen), server_->port()) : std::string();
    peers_ = std::make_unique<ReplicaPeers>(world_, p.dp, mesh_.dp_rank(), leader_, addr, p.timeout_s);
    if (server_) spdlog::info("replica {} serving on {}", mesh_.dp_rank(), addr);
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
  if (server_) server_->stop();
}

}  // namespace tandem
