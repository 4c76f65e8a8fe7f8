// RpcRouter: the front end of a serving job with several data-parallel replicas. Clients
// talk to it exactly as to one RpcServer (serve/tandem.capnp); it forwards each call to the
// replicas' own RpcServers over Cap'n Proto.
//
// Contract: start() launches one thread running a KJ event loop that connects to every
// address in options.replicas (index = the replica's dp rank; each must already listen),
// then serves `Tandem` on options.listen and, when options.metrics_listen is set, Prometheus
// text at GET /metrics; it returns once it listens (or throws naming the address).
//   - generate: replicas are tried round-robin. The client's TokenSink is passed through, so
//     tokens stream from the replica to the client through the router with `-> stream` flow
//     control. A replica that answers `overloaded` or `shuttingDown` is skipped for the next
//     one; after every replica refused, the last refusal goes back to the client. The result
//     names the replica that served it (Result.replica). Dropping the call drops the
//     forwarded call, so the replica cancels the request and frees its blocks.
//     A replica whose connection failed gives `internal` naming it.
//   - health: live; ready when every replica is ready; detail lists the replicas.
//   - stats: every replica's stats, merged (serve/stats_merge.h), with the per-replica list.
//   - modelInfo: replica 0's, with dp = the number of replicas.
// Client connections are bounded as the RpcServer's are (options.limits: message size,
// connections, idle time); the router's own connections to the replicas stay open (a `health`
// call three times per idle_timeout_s keeps the replicas' servers from closing them). Model code never runs here; nothing here calls MPI. stop() (also in the destructor) ends the
// loop, closes the connections and joins; idempotent.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "serve/rpc_connections.h"

namespace tandem::serve {

struct RpcRouterOptions {
  std::string listen = "127.0.0.1:0";
  std::string metrics_listen;         // "" = no metrics endpoint
  std::vector<std::string> replicas;  // "host:port" of each replica's RpcServer
  ConnectionLimits limits;            // of the clients' connections (serve/rpc_connections.h)
};

class RpcRouter {
 public:
  explicit RpcRouter(RpcRouterOptions options);
  ~RpcRouter();
  RpcRouter(const RpcRouter&) = delete;
  RpcRouter& operator=(const RpcRouter&) = delete;

  void start();
  void stop();
  int port() const;
  int metrics_port() const;  // 0 when there is no metrics endpoint

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::serve
