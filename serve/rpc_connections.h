// Bounded connections for the KJ front ends (serve/rpc_server, serve/rpc_router): what one
// client can make the server hold is limited before it is let in.
//
// Contract (all on the one KJ event-loop thread of the front end):
//   - ConnectionLimits: an incoming Cap'n Proto message larger than max_message_bytes ends its
//     connection (Cap'n Proto refuses it from its size header, before buffering it: "Message is
//     too large"); at most max_connections connections are open at once per listener (one
//     more is closed as soon as it is accepted); a connection with no call in flight and none
//     begun for idle_timeout_s is closed (0: never).
//   - BoundedAcceptor accepts on a listener and hands each connection to its handler, whose
//     promise ends when the connection is done; it counts open connections against the limit.
//     Destroying it closes every connection it holds.
//   - ConnectionActivity: the per-connection record the connection's bootstrap server updates
//     (begin_call/end_call); serve_rpc_connection() serves two-party RPC on one connection
//     with the message limit and closes it when the peer leaves or it has idled too long.
//   - FrontListeners: the listeners of one front end, both bounded: Cap'n Proto RPC on one
//     address (each connection gets its own bootstrap server, told of the connection's
//     activity) and, optionally, HTTP on another (GET /metrics). Destroying it closes every
//     connection, then the listeners.
//   - max_generate_message_bytes(): the largest valid generate call for a model's context and
//     tokenizer (a text prompt of seq_len - 1 tokens of the longest token, 8 stop sequences of
//     256 bytes, framing), the default message limit.
#pragma once

#include <capnp/capability.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <kj/timer.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tandem::serve {

struct ConnectionLimits {
  size_t max_message_bytes = size_t{1} << 20;
  int max_connections = 256;
  double idle_timeout_s = 60.0;
};

size_t max_generate_message_bytes(int64_t seq_len, size_t max_token_bytes);

class ConnectionActivity {
 public:
  explicit ConnectionActivity(kj::Timer& timer) : timer_(timer), last_(timer.now()) {}
  void begin_call() {
    ++in_flight_;
    last_ = timer_.now();
  }
  void end_call() {
    --in_flight_;
    last_ = timer_.now();
  }
  // How long the connection has had no call in flight (0 while one is).
  kj::Duration idle_for() const { return in_flight_ > 0 ? 0 * kj::SECONDS : timer_.now() - last_; }

 private:
  kj::Timer& timer_;
  kj::TimePoint last_;
  int in_flight_ = 0;
};

// For a bootstrap server's dispatchCall(): marks the connection busy from the call's arrival
// until its promise is done (or destroyed).
template <class Dispatch>
auto track_call(const std::shared_ptr<ConnectionActivity>& activity, Dispatch&& dispatch) {
  activity->begin_call();
  try {
    auto r = dispatch();
    r.promise = r.promise.attach(kj::defer([activity] { activity->end_call(); }));
    return r;
  } catch (...) {
    activity->end_call();
    throw;
  }
}

// Serves `bootstrap` over two-party RPC on `stream` until the peer disconnects or the
// connection has idled for limits.idle_timeout_s (then it is closed).
kj::Promise<void> serve_rpc_connection(kj::Own<kj::AsyncIoStream> stream, capnp::Capability::Client bootstrap,
                                       std::shared_ptr<ConnectionActivity> activity, kj::Timer& timer,
                                       const ConnectionLimits& limits);

class BoundedAcceptor final : private kj::TaskSet::ErrorHandler {
 public:
  using Handler = std::function<kj::Promise<void>(kj::Own<kj::AsyncIoStream>)>;
  // who: names the front end and the limit's key in the warning about refused connections.
  // A failed accept (e.g. EMFILE: no file descriptor left) is logged and retried after 100 ms.
  BoundedAcceptor(kj::Timer& timer, int max_connections, Handler handler, std::string who);
  kj::Promise<void> listen(kj::ConnectionReceiver& listener);
  int open() const { return open_; }
  int64_t refused() const { return refused_; }

 private:
  void taskFailed(kj::Exception&& e) override;
  kj::Promise<void> accept_loop(kj::ConnectionReceiver& listener);

  kj::Timer& timer_;
  int max_;
  Handler handler_;
  std::string who_;
  int open_ = 0;
  int64_t refused_ = 0;
  kj::TimePoint last_warning_;
  kj::TaskSet tasks_;  // last: its connections use the members above
};

class FrontListeners {
 public:
  using MakeBootstrap = std::function<capnp::Capability::Client(std::shared_ptr<ConnectionActivity>)>;
  // Listens at once (throws naming nothing: the caller names the addresses). metrics_listen ""
  // means no HTTP listener; `metrics` and `table` must outlive this object.
  FrontListeners(kj::AsyncIoProvider& io, kj::WaitScope& ws, const ConnectionLimits& limits, const std::string& listen,
                 MakeBootstrap make_bootstrap, const std::string& metrics_listen, kj::HttpService& metrics,
                 const kj::HttpHeaderTable& table, const std::string& who);
  ~FrontListeners();
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }

 private:
  struct Errors final : kj::TaskSet::ErrorHandler {
    std::string who;
    void taskFailed(kj::Exception&& e) override;
  };
  ConnectionLimits limits_;
  MakeBootstrap make_bootstrap_;
  Errors errors_;
  int port_ = 0, metrics_port_ = 0;
  // Destroyed from the bottom up: the accept loops, the connections, the HTTP server, the
  // listeners.
  kj::Own<kj::ConnectionReceiver> listener_, metrics_listener_;
  kj::Own<kj::HttpServer> http_;
  std::unique_ptr<BoundedAcceptor> rpc_acceptor_, http_acceptor_;
  std::unique_ptr<kj::TaskSet> tasks_;
};

}  // namespace tandem::serve
