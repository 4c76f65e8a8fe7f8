// ServeFrontEnds: the engine and the RPC side of a serving job, shared by `tandem serve` and
// `tandem run`. It owns this rank's EngineFront (serve/engine_front.h: the engine core, its
// lock and streams, and the replica's RPC server), so that nothing outlives what it calls:
// the router and the peers go first, then the RPC server, then the engine.
// Each replica leader (tp 0 of pp stage 0 of its dp group) runs an RpcServer on its engine:
// on serve.listen (with the metrics endpoint) when parallel.dp = 1, else on
// serve.replica_listen with any free port, and world rank 0 also runs the RpcRouter on
// serve.listen that spreads requests over the replicas (launch/serve_replicas.h).
//
// Contract: every rank constructs it after its executor and tokenizer (which must outlive it),
// with `stop` polled by the engine (plus, for dp > 1, a stop from rank 0), calls start()
// (collective when dp > 1: it gathers the replica addresses), drives engine() with a serving
// mode's driver, then calls stop() (collective when dp > 1: rank 0 stops the other replicas
// and waits for them before closing the router).
// --port-file: rank 0 writes the client port, the metrics port and its pid, one per line.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "launch/config.h"
#include "launch/serve_replicas.h"
#include "parallel/mesh.h"
#include "runtime/data/bpe_tokenizer.h"
#include "serve/engine_front.h"
#include "serve/replica_executor.h"
#include "serve/rpc_router.h"

namespace tandem {

class ServeFrontEnds {
 public:
  // tokenizer: the leader's (its longest token sizes the default message limit); may be null
  // on ranks that are no replica leader. config_path names the model when serve.name is empty.
  ServeFrontEnds(MPI_Comm world, int world_rank, const RunConfig& cfg, Mesh& mesh,
                 serve::ReplicaExecutor& exec, const BpeTokenizer* tokenizer, const std::string& config_path,
                 std::function<bool()> stop);
  ~ServeFrontEnds();

  serve::EngineFront& engine() { return *engine_; }
  void start(const std::string& port_file);
  void stop();
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }

 private:
  MPI_Comm world_;
  int world_rank_;
  const RunConfig& cfg_;
  Mesh& mesh_;
  bool leader_;
  const BpeTokenizer* tok_;
  std::unique_ptr<serve::EngineFront> engine_;  // first: destroyed last
  std::unique_ptr<ReplicaPeers> peers_;
  std::unique_ptr<serve::RpcRouter> router_;
  int port_ = 0, metrics_port_ = 0;
};

}  // namespace tandem
