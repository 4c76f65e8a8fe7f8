// ServeFrontEnds: the RPC side of a serving job, shared by `tandem serve` and `tandem run`.
// Each replica leader (tp 0 of pp stage 0 of its dp group) runs an RpcServer on its engine:
// on serve.listen (with the metrics endpoint) when parallel.dp = 1, else on
// serve.replica_listen with any free port, and world rank 0 also runs the RpcRouter on
// serve.listen that spreads requests over the replicas (launch/serve_replicas.h).
//
// Contract: every rank constructs it, builds its Engine with engine_options() (which adds the
// stop signal of the dp > 1 handshake to `base`), calls start() (collective when dp > 1: it
// gathers the replica addresses), runs the engine, then calls stop() (collective when
// dp > 1: rank 0 stops the other replicas and waits for them before closing the router).
// --port-file: rank 0 writes the client port, the metrics port and its pid, one per line.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "launch/config.h"
#include "launch/serve_replicas.h"
#include "parallel/mesh.h"
#include "runtime/data/bpe_tokenizer.h"
#include "serve/engine.h"
#include "serve/rpc_router.h"
#include "serve/rpc_server.h"

namespace tandem {

class ServeFrontEnds {
 public:
  ServeFrontEnds(MPI_Comm world, int world_rank, const RunConfig& cfg, Mesh& mesh, bool leader);
  ~ServeFrontEnds();

  // The engine options of this job (scheduler sizes from serve.*), stop_requested = `stop`
  // or, for dp > 1 followers' leaders, a stop from rank 0.
  serve::EngineOptions engine_options(const std::string& config_path, std::function<bool()> stop);
  // tokenizer: the leader's (its longest token sizes the default message limit); may be null
  // on ranks that are no replica leader.
  void start(serve::Engine& engine, const BpeTokenizer* tokenizer, const std::string& port_file);
  void stop();
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }

 private:
  MPI_Comm world_;
  int world_rank_;
  const RunConfig& cfg_;
  Mesh& mesh_;
  bool leader_;
  std::unique_ptr<serve::RpcServer> server_;
  std::unique_ptr<ReplicaPeers> peers_;
  std::unique_ptr<serve::RpcRouter> router_;
  int port_ = 0, metrics_port_ = 0;
};

}  // namespace tandem
