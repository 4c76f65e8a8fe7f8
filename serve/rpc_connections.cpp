// Bounded accept loops and per-connection RPC under limits (contract in rpc_connections.h).
#include "serve/rpc_connections.h"

#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace tandem::serve {

namespace {

constexpr size_t kStopBytes = 8 * (256 + 16);  // 8 stop sequences, each a Text and its pointer
constexpr size_t kFraming = 16 << 10;          // the call, its cap table, the other fields

kj::Duration seconds(double s) { return static_cast<int64_t>(s * 1e6) * kj::MICROSECONDS; }

kj::Promise<void> idle_watch(kj::Timer& timer, std::shared_ptr<ConnectionActivity> activity, kj::Duration limit) {
  const kj::Duration idle = activity->idle_for();
  if (idle >= limit) return kj::READY_NOW;
  return timer.afterDelay(limit - idle).then([&timer, activity = kj::mv(activity), limit]() mutable {
    return idle_watch(timer, kj::mv(activity), limit);
  });
}

// One accepted connection: the stream, the two-party network on it and the RPC system; the
// members are destroyed in reverse order (RPC, network, stream).
struct RpcConnection {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  RpcConnection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap, capnp::ReaderOptions options)
      : stream(kj::mv(s)),
        network(kj::heap<capnp::TwoPartyVatNetwork>(*stream, capnp::rpc::twoparty::Side::SERVER, options)),
        rpc(kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcServer(*network, kj::mv(bootstrap)))) {}
  kj::Own<kj::AsyncIoStream> close_rpc() {
    rpc = nullptr;
    network = nullptr;
    return kj::mv(stream);
  }
};

// Closes a connection the way that lets the peer read what was sent last (Cap'n Proto's Abort
// naming why, e.g. "Message is too large"): no more writes, then what the peer still sends is
// read and dropped until it closes too, for at most kLingerS, so that closing with unread data
// does not reset the connection before the peer read the reason. Memory: one 64 KiB buffer.
constexpr double kLingerS = 2.0;
kj::Promise<void> drain(kj::AsyncIoStream& stream, kj::ArrayPtr<kj::byte> buf) {
  return stream.tryRead(buf.begin(), 1, buf.size()).then([&stream, buf](size_t n) -> kj::Promise<void> {
    if (n == 0) return kj::READY_NOW;
    return drain(stream, buf);
  });
}
kj::Promise<void> linger_close(kj::Own<kj::AsyncIoStream> stream, kj::Timer& timer) {
  try {
    stream->shutdownWrite();
  } catch (const kj::Exception&) {  // already shut, or the peer is gone
  }
  auto buf = kj::heapArray<kj::byte>(64 << 10);
  auto read = drain(*stream, buf.asPtr()).catch_([](kj::Exception&&) {});
  return read.exclusiveJoin(timer.afterDelay(seconds(kLingerS))).attach(kj::mv(stream), kj::mv(buf));
}

}  // namespace

size_t max_generate_message_bytes(int64_t seq_len, size_t max_token_bytes) {
  const auto n = static_cast<size_t>(std::max<int64_t>(seq_len, 1));
  const size_t text = (n - 1) * std::max<size_t>(max_token_bytes, 1) + 8;
  const size_t tokens = n * sizeof(int32_t) + 8;
  const size_t bytes = std::max(text, tokens) + kStopBytes + kFraming;
  return (bytes + 7) / 8 * 8;
}

kj::Promise<void> serve_rpc_connection(kj::Own<kj::AsyncIoStream> stream, capnp::Capability::Client bootstrap,
                                       std::shared_ptr<ConnectionActivity> activity, kj::Timer& timer,
                                       const ConnectionLimits& limits) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = (limits.max_message_bytes + 7) / 8;
  auto conn = kj::heap<RpcConnection>(kj::mv(stream), kj::mv(bootstrap), options);
  kj::Promise<void> ended = conn->network->onDisconnect();
  if (limits.idle_timeout_s > 0)
    ended = ended.exclusiveJoin(idle_watch(timer, kj::mv(activity), seconds(limits.idle_timeout_s)));
  RpcConnection& c = *conn;
  return ended.then([&c, &timer] { return linger_close(c.close_rpc(), timer); }).attach(kj::mv(conn));
}

BoundedAcceptor::BoundedAcceptor(kj::Timer& timer, int max_connections, Handler handler, std::string who)
    : timer_(timer), max_(max_connections), handler_(std::move(handler)), who_(std::move(who)),
      last_warning_(timer.now() - 3600 * kj::SECONDS), tasks_(*this) {}

kj::Promise<void> BoundedAcceptor::listen(kj::ConnectionReceiver& listener) { return accept_loop(listener); }

kj::Promise<void> BoundedAcceptor::accept_loop(kj::ConnectionReceiver& listener) {
  return listener.accept().then(
      [this, &listener](kj::Own<kj::AsyncIoStream> stream) {
        if (open_ >= max_) {
          ++refused_;
          if (timer_.now() - last_warning_ >= 10 * kj::SECONDS) {
            last_warning_ = timer_.now();
            spdlog::warn("{}: {} connections are open, the limit; closing new ones ({} so far)", who_, open_,
                         refused_);
          }
          stream = nullptr;  // closes it
        } else {
          ++open_;
          tasks_.add(kj::evalNow([&] { return handler_(kj::mv(stream)); }).attach(kj::defer([this] { --open_; })));
        }
        return accept_loop(listener);
      },
      [this, &listener](kj::Exception&& e) {
        spdlog::warn("{}: accept failed: {}; retrying in 100 ms", who_, e.getDescription().cStr());
        return timer_.afterDelay(100 * kj::MILLISECONDS).then([this, &listener] { return accept_loop(listener); });
      });
}

FrontListeners::FrontListeners(kj::AsyncIoProvider& io, kj::WaitScope& ws, const ConnectionLimits& limits,
                               const std::string& listen, MakeBootstrap make_bootstrap,
                               const std::string& metrics_listen, kj::HttpService& metrics,
                               const kj::HttpHeaderTable& table, const std::string& who)
    : limits_(limits), make_bootstrap_(std::move(make_bootstrap)) {
  errors_.who = who;
  auto& network = io.getNetwork();
  auto& timer = io.getTimer();
  listener_ = network.parseAddress(listen).wait(ws)->listen();
  port_ = static_cast<int>(listener_->getPort());
  tasks_ = std::make_unique<kj::TaskSet>(errors_);
  rpc_acceptor_ = std::make_unique<BoundedAcceptor>(
      timer, limits_.max_connections,
      [this, &timer](kj::Own<kj::AsyncIoStream> stream) {
        auto activity = std::make_shared<ConnectionActivity>(timer);
        return serve_rpc_connection(kj::mv(stream), make_bootstrap_(activity), activity, timer, limits_);
      },
      who + " (serve.max_connections)");
  tasks_->add(rpc_acceptor_->listen(*listener_));
  if (metrics_listen.empty()) return;
  metrics_listener_ = network.parseAddress(metrics_listen).wait(ws)->listen();
  metrics_port_ = static_cast<int>(metrics_listener_->getPort());
  http_ = kj::heap<kj::HttpServer>(timer, table, metrics);
  http_acceptor_ = std::make_unique<BoundedAcceptor>(
      timer, limits_.max_connections,
      [this](kj::Own<kj::AsyncIoStream> stream) { return http_->listenHttp(kj::mv(stream)); },
      who + " metrics (serve.max_connections)");
  tasks_->add(http_acceptor_->listen(*metrics_listener_));
}

FrontListeners::~FrontListeners() {
  tasks_.reset();
  http_acceptor_.reset();
  rpc_acceptor_.reset();
}

void FrontListeners::Errors::taskFailed(kj::Exception&& e) {
  spdlog::warn("{}: {}", who, e.getDescription().cStr());
}

void BoundedAcceptor::taskFailed(kj::Exception&& e) {
  if (e.getType() != kj::Exception::Type::DISCONNECTED)
    spdlog::debug("{}: a connection ended with: {}", who_, e.getDescription().cStr());
}

}  // namespace tandem::serve
