// RpcClient: a synchronous client of serve/tandem.capnp for the CLI commands, the benchmark
// and the tests. It owns a KJ event loop (capnp::EzRpcClient), so it must be created and used
// on one thread, and a thread holds at most one RpcClient at a time (KJ allows one event loop
// per thread); clients in different threads are independent.
//
// Contract: the constructor connects lazily; the first call throws std::runtime_error naming
// the address when nothing listens there. generate() streams pieces to on_tokens as they
// arrive; on_tokens returning false cancels the request by dropping the call (the server
// frees its blocks), and generate() then returns with cancelled = true. A typed server error
// comes back as ok = false with its kind — never as an exception.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "serve/serving_api.h"

namespace kj {
class WaitScope;
}

namespace tandem::serve {

class RpcClient {
 public:
  struct GenerateOutcome {
    bool ok = false;
    bool cancelled = false;  // on_tokens asked to stop
    GenerateResult result;
    ErrorKind error_kind = ErrorKind::Internal;
    std::string error_message;
    double retry_after_s = 0.0;
  };
  using TokenCallback = std::function<bool(const std::vector<TokenPiece>&)>;

  explicit RpcClient(const std::string& host_port);
  ~RpcClient();

  GenerateOutcome generate(const GenerateRequest& req, const TokenCallback& on_tokens);
  HealthInfo health();
  StatsSnapshot stats();
  ModelInfo model_info();

  // Open-loop use (bench-serve): start requests without waiting; each reports through its
  // callbacks while run_until_idle() or wait_ms() runs the loop.
  struct Handle;
  void start(const GenerateRequest& req, TokenCallback on_tokens,
             std::function<void(const GenerateOutcome&)> on_done);
  void wait_ms(double ms);      // runs the loop for at least ms milliseconds
  void run_until_idle();        // runs the loop until every started request has ended
  int in_flight() const;

 private:
  // Runs f(wait_scope) on this client's loop, then flushes what it queued; a kj::Exception
  // becomes std::runtime_error naming the address.
  template <class F>
  auto blocking(F&& f) -> decltype(f(std::declval<kj::WaitScope&>()));
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::serve
