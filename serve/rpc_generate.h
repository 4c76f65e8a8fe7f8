// GenerateFront: the life of every generate call on one RPC server (serve/rpc_server.h), from
// the parameters to the Outcome, on the server's KJ event-loop thread.
//
// Contract.
//   - Parameters are read once, and the request is refused with a typed Outcome (never an RPC
//     exception) when they are malformed (wrong pointer types, an unknown enum value: the
//     message Cap'n Proto gives) or the sink is null (invalidRequest).
//   - Preparing a request (tokenizing a text prompt, validating, ServingBackend::submit) costs
//     work in its size, so it runs on one worker thread of its own, never on the loop; at most
//     max_preparing wait for it (more are refused with overloaded).
//   - Tokens reach the client's TokenSink in order, one call at a time: the tokens that arrive
//     while a call is in flight go together in the next one. A call counts as done when the
//     client's sink returned it (each call is sent as an ordinary call to read its return, so
//     not Cap'n Proto's `-> stream` window). The Outcome is written only after the last call
//     returned, so a client that stops reading at the Outcome has every token.
//   - A sink call that throws ends the request with `internal`; one that has not returned after
//     sink_timeout_s (or past the request's own deadline, whichever comes first) ends it with
//     `deadlineExceeded` and drops the call; either way the backend stops generating for it
//     (its KV blocks are freed) at once.
//   - Every call ends exactly once and is counted once in counters(): finished (the Result was
//     written), cancelled (the client dropped the call or its connection first), or rejected
//     under the error kind the client got. The backend's own counters of those are ignored:
//     only the front end sees how a request ended for its client.
//   - The backend's events for a request arrive through post(): any thread may call it; the
//     closures run on the loop thread when the server's loop runs them (run_posted()).
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "serve/serving_api.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

struct OutcomeCounters {
  int64_t finished = 0, cancelled = 0;
  int64_t rejected[5] = {0, 0, 0, 0, 0};  // by ErrorKind
  void fill(StatsSnapshot& s) const;      // sets requests_finished/_cancelled and rejected
};

// Cross-thread hand-off into the KJ loop: any thread posts closures; the loop thread waits for
// them without polling (the first post after a wait fulfils a cross-thread promise).
class Mailbox {
 public:
  void post(std::function<void()> f);
  kj::Promise<void> wait();                 // loop thread
  std::vector<std::function<void()>> take();
  void close();                             // later posts are dropped

 private:
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake_;
  bool closed_ = false;
};

// One worker thread running posted jobs in order; post() refuses when `capacity` wait.
class PrepWorker {
 public:
  explicit PrepWorker(size_t capacity);
  ~PrepWorker();
  bool post(std::function<void()> job);
  void stop();  // joins; jobs still waiting are dropped

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t capacity_;
  bool quit_ = false;
  std::thread thread_;  // last
};

using GenerateCallContext = capnp::CallContext<rpc::Tandem::GenerateParams, rpc::Tandem::GenerateResults>;

struct GenerateOptions {
  double sink_timeout_s = 30.0;
  size_t max_preparing = 64;
};

class GenerateFront {
 public:
  GenerateFront(ServingBackend& backend, kj::Timer& timer, std::shared_ptr<Mailbox> box,
                std::shared_ptr<PrepWorker> prep, GenerateOptions opt);
  ~GenerateFront();

  // Serves one generate call; the promise writes the Outcome into context's results.
  kj::Promise<void> generate(GenerateCallContext context);
  const OutcomeCounters& counters() const { return counters_; }
  int open_calls() const { return open_calls_; }

  struct Call;  // one call's loop-thread state (rpc_generate.cpp)

  // The request's events, run on the loop thread (posted by the worker and the backend).
  void on_submitted(const std::weak_ptr<Call>& c, uint64_t id);
  void on_refused(const std::weak_ptr<Call>& c, ErrorKind kind, const std::string& msg, double retry);
  void on_tokens(const std::weak_ptr<Call>& c, std::vector<TokenPiece> pieces);
  void on_end(const std::weak_ptr<Call>& c);

 private:
  void send_pending(const std::shared_ptr<Call>& s);
  void maybe_complete(const std::shared_ptr<Call>& s);
  // Ends the call with an error of the front end's own (a sink that failed or stalled):
  // the backend stops the request if it still runs.
  void fail(const std::shared_ptr<Call>& s, ErrorKind kind, const std::string& msg);
  void complete(const std::shared_ptr<Call>& s);  // counts the outcome, fulfils the call

  ServingBackend& backend_;
  kj::Timer& timer_;
  std::shared_ptr<Mailbox> box_;
  std::shared_ptr<PrepWorker> prep_;
  GenerateOptions opt_;
  OutcomeCounters counters_;
  int open_calls_ = 0;
};

}  // namespace tandem::serve
