// RpcClient: a synchronous client of serve/tandem.capnp for the CLI commands, the benchmark
// and the tests. It runs on the KJ event loop of the thread that creates it (capnp::EzRpcClient
// makes one per thread and shares it between the clients of that thread), so each client is
// used only on the thread that created it, and that thread must not run another KJ event loop
// of its own. Clients in different threads are independent.
//
// Contract: the constructor connects (and bootstraps `Tandem`); it throws std::runtime_error
// naming the address when nothing answers there within the connect limit. generate() streams
// pieces to on_tokens in order, all of them before it returns; on_tokens returning false
// cancels the request by dropping the call (the server then cancels it in the engine, which
// frees its blocks), and generate() returns with cancelled = true. A typed server error comes
// back as ok = false with its kind, never as an exception; a broken connection or a call past
// the limit throws std::runtime_error naming the address.
// Open-loop use (bench-serve, soak tests): start() sends a request without waiting; its
// callbacks run while wait_ms(), run_until_idle() or another blocking call of this client (or
// of another client on this thread) runs the loop. generate_many() runs a batch that way.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "serve/serving_api.h"

namespace tandem::serve {

class RpcClient {
 public:
  struct GenerateOutcome {
    bool ok = false;
    bool cancelled = false;  // on_tokens (or cancel_after) asked to stop
    GenerateResult result;
    ErrorKind error_kind = ErrorKind::Internal;
    std::string error_message;
    double retry_after_s = 0.0;
    int32_t tokens_received = 0;  // pieces handed to on_tokens
  };
  using TokenCallback = std::function<bool(const std::vector<TokenPiece>&)>;
  using DoneCallback = std::function<void(const GenerateOutcome&)>;

  // timeout_s > 0 limits connecting and each blocking call (generate, health, stats,
  // model_info); 0: connecting waits up to kDefaultConnectTimeoutS, calls as long as they take.
  static constexpr double kDefaultConnectTimeoutS = 30.0;
  explicit RpcClient(const std::string& host_port, double timeout_s = 0.0);
  ~RpcClient();
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  GenerateOutcome generate(const GenerateRequest& req, const TokenCallback& on_tokens);
  HealthInfo health();
  StatsSnapshot stats();
  ModelInfo model_info();
  const std::string& address() const;

  // Starts a request and returns at once. on_done runs exactly once: with the outcome, or
  // with ok = false, kind Internal and a message starting "rpc:" when the connection broke.
  void start(const GenerateRequest& req, TokenCallback on_tokens, DoneCallback on_done);
  void wait_ms(double ms);  // runs the loop for ms milliseconds
  // Runs the loop until every started request has ended; false when timeout_s (> 0) passed
  // first (the requests stay in flight).
  bool run_until_idle(double timeout_s = 0.0);
  int in_flight() const;

  // Runs all requests concurrently on this client's loop and returns their outcomes in order.
  // cancel_after[i] > 0 cancels request i once that many tokens arrived (missing or <= 0: run
  // to the end). A broken connection gives those requests the "rpc:" outcome of start().
  std::vector<GenerateOutcome> generate_many(const std::vector<GenerateRequest>& reqs,
                                             const std::vector<int>& cancel_after = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::serve
