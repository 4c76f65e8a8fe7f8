// RpcServer: the Cap'n Proto front end of a ServingBackend (serve/tandem.capnp), plus the
// Prometheus endpoint, on one thread of their own.
//
// Contract: start() launches one thread that runs a KJ event loop serving `Tandem` with
// two-party RPC (capnp::EzRpcServer) on options.listen ("host:port", port 0 = any free port)
// and, when options.metrics_listen is set, Prometheus text at GET /metrics through
// kj::HttpServer on that address; it returns once both listen (or throws naming the address).
// Model code never runs on that thread: generate() validates and enqueues through
// ServingBackend::submit(), and the engine's thread hands stream events back through a
// mailbox (a mutex-guarded queue whose arrival wakes the loop through a KJ cross-thread
// fulfiller), so the engine never blocks on the loop. Each reply's tokens go to the client's
// TokenSink with `-> stream` calls, batched while a call is in flight, in order, before the
// Outcome. A request the backend refuses gets an Outcome with the typed error (never an RPC
// exception); the connection stays usable. Dropping a generate call (or the connection)
// cancels it: backend.cancel(id) runs exactly once for an unfinished request.
// stop() (also in the destructor) ends the loop and joins; idempotent.
#pragma once

#include <memory>
#include <string>

#include "serve/serving_api.h"

namespace tandem::serve {

struct RpcServerOptions {
  std::string listen = "127.0.0.1:0";
  std::string metrics_listen;  // "" = no metrics endpoint
};

class RpcServer {
 public:
  RpcServer(ServingBackend& backend, RpcServerOptions options);
  ~RpcServer();
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  void start();
  void stop();
  int port() const;
  int metrics_port() const;  // 0 when there is no metrics endpoint

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::serve
