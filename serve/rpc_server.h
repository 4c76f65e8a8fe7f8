// RpcServer: the Cap'n Proto front end of a ServingBackend (serve/tandem.capnp), plus the
// Prometheus endpoint, on one thread of their own.
//
// Contract: start() launches one thread that runs a KJ event loop serving `Tandem` with
// two-party RPC (capnp::EzRpcServer) on options.listen ("host:port", port 0 = any free port)
// and, when options.metrics_listen is set, Prometheus text at GET /metrics through
// kj::HttpServer on that address (same loop); it returns once both listen, or throws
// tandem::Error naming the addresses. Model code never runs on that thread: generate()
// validates and enqueues through ServingBackend::submit(), and the engine's thread hands
// stream events back through a mailbox (a mutex-guarded queue whose first post after the
// loop went idle fulfils a KJ cross-thread promise the loop waits on), so the engine never
// blocks on the loop and needs no event loop of its own (kj::Executor::executeAsync would
// need one on the calling thread; executeSync would block the engine). Events name their call
// by a weak reference: one whose call is gone is dropped, and once the loop stopped the mailbox
// drops every post. Each reply's tokens go to the client's TokenSink with `-> stream` calls,
// in order, batched while a call waits for flow control, all before the Outcome. A request
// the backend refuses gets an Outcome with the typed error (never an RPC exception); the
// connection stays usable. Dropping a generate call or its connection, a failing TokenSink,
// or stop() with the request unfinished cancels it: backend.cancel(id) runs exactly once for
// each such request, never for one whose finished()/failed() already reached the loop.
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
