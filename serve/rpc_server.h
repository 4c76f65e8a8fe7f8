// RpcServer: the Cap'n Proto front end of a ServingBackend (serve/tandem.capnp), plus the
// Prometheus endpoint, on one thread of their own.
//
// Contract: start() launches one thread that runs a KJ event loop serving `Tandem` with
// two-party RPC on options.listen ("host:port", port 0 = any free port) and, when
// options.metrics_listen is set, Prometheus text at GET /metrics through kj::HttpServer on
// that address; it returns once both listen (or throws naming the address).
// Bounds (serve/rpc_connections.h): each listener holds at most limits.max_connections
// connections; an RPC connection idle for limits.idle_timeout_s is closed; an incoming message
// over limits.max_message_bytes ends its connection before it is buffered.
// Generate calls (serve/rpc_generate.h): parameters are read and refused on the loop in O(1);
// tokenizing and submit() run on a worker thread, never on the loop; tokens reach the client's
// TokenSink in order, batched while a call is in flight, each call acknowledged before the
// next, and the Outcome only after the last; a sink that throws or stalls ends the request
// (internal / deadlineExceeded) and the backend stops it. A request the backend refuses gets
// an Outcome with the typed error (never an RPC exception); the connection stays usable.
// Dropping a generate call (or the connection) cancels it: backend.cancel(id) runs exactly
// once for an unfinished request. `stats` and /metrics count how requests ended for their
// clients here (finished, cancelled, rejected by kind), over the backend's other fields.
// The engine's thread hands stream events back through a mailbox (a mutex-guarded queue whose
// arrival wakes the loop through a KJ cross-thread fulfiller), so it never blocks on the loop.
// stop() (also in the destructor) ends the loop and joins its threads; idempotent.
#pragma once

#include <memory>
#include <string>

#include "serve/rpc_connections.h"
#include "serve/serving_api.h"

namespace tandem::serve {

struct RpcServerOptions {
  std::string listen = "127.0.0.1:0";
  std::string metrics_listen;  // "" = no metrics endpoint
  ConnectionLimits limits;
  double sink_timeout_s = 30.0;  // a TokenSink call not returned after this long ends its request
  size_t max_preparing = 64;     // requests waiting to be tokenized and submitted; more: overloaded
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
