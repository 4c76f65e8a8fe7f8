// The Cap'n Proto front end and the metrics endpoint on their own KJ thread (contract in
// rpc_server.h).
#include "serve/rpc_server.h"

#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/core/error.h"
#include "serve/kj_glue.h"
#include "serve/metrics_text.h"
#include "serve/rpc_convert.h"
#include "serve/rpc_generate.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

namespace {

constexpr auto kCloseGrace = std::chrono::seconds(2);
constexpr auto kCloseQuiet = std::chrono::milliseconds(100);

// The backend's stats with the front end's outcome counters.
StatsSnapshot front_stats(ServingBackend& backend, const GenerateFront& front) {
  StatsSnapshot s = backend.stats();
  front.counters().fill(s);
  return s;
}

// The bootstrap of one connection: every call marks the connection busy while it runs.
class TandemConnection final : public rpc::Tandem::Server {
 public:
  TandemConnection(ServingBackend& backend, GenerateFront& front, std::shared_ptr<ConnectionActivity> activity)
      : backend_(backend), front_(front), activity_(std::move(activity)) {}

  DispatchCallResult dispatchCall(uint64_t interface_id, uint16_t method_id,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    return track_call(activity_, [&] { return rpc::Tandem::Server::dispatchCall(interface_id, method_id, context); });
  }

  kj::Promise<void> generate(GenerateContext context) override { return front_.generate(context); }

  kj::Promise<void> health(HealthContext context) override {
    const HealthInfo h = backend_.health();
    auto r = context.getResults();
    r.setLive(h.live);
    r.setReady(h.ready);
    r.setDetail(as_text(h.detail));
    return kj::READY_NOW;
  }

  kj::Promise<void> stats(StatsContext context) override {
    to_capnp(front_stats(backend_, front_), context.getResults().initStats());
    return kj::READY_NOW;
  }

  kj::Promise<void> modelInfo(ModelInfoContext context) override {
    to_capnp(backend_.model_info(), context.getResults().initInfo());
    return kj::READY_NOW;
  }

 private:
  ServingBackend& backend_;
  GenerateFront& front_;
  std::shared_ptr<ConnectionActivity> activity_;
};

class MetricsService final : public kj::HttpService {
 public:
  MetricsService(ServingBackend& backend, const GenerateFront& front, const kj::HttpHeaderTable& table)
      : backend_(backend), front_(front), table_(table) {}
  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&,
                            kj::AsyncInputStream&, Response& response) override {
    if (!is_metrics_get(method, url)) return send_text(response, table_, 404, "Not Found", kMetricsNotFound);
    return send_text(response, table_, 200, "OK", prometheus_text(front_stats(backend_, front_), backend_.model_info()));
  }

 private:
  ServingBackend& backend_;
  const GenerateFront& front_;
  const kj::HttpHeaderTable& table_;
};

}  // namespace

struct RpcServer::Impl {
  Impl(ServingBackend& b, RpcServerOptions o) : backend(b), opt(std::move(o)) {}
  ServingBackend& backend;
  RpcServerOptions opt;
  std::thread thread;
  std::shared_ptr<Mailbox> box = std::make_shared<Mailbox>();
  std::shared_ptr<PrepWorker> prep;
  int port = 0, metrics_port = 0;
  bool started = false, stopping = false;

  std::promise<void> ready;
  bool listening = false;

  void run() {
    run_loop_body(ready, listening, "serve rpc", [this] { loop(); });
    box->close();
  }

  void loop() {
    auto io = kj::setupAsyncIo();
    auto& ws = io.waitScope;
    auto& timer = io.provider->getTimer();
    GenerateFront front(backend, timer, box, prep, GenerateOptions{opt.sink_timeout_s, opt.max_preparing});
    kj::HttpHeaderTable table;
    MetricsService metrics(backend, front, table);
    FrontListeners listeners(
        *io.provider, ws, opt.limits, opt.listen,
        [&](std::shared_ptr<ConnectionActivity> activity) -> capnp::Capability::Client {
          return kj::heap<TandemConnection>(backend, front, kj::mv(activity));
        },
        opt.metrics_listen, metrics, table, "serve rpc");
    port = listeners.port();
    metrics_port = listeners.metrics_port();
    ready.set_value();
    listening = true;
    bool stop = false;
    while (!stop) {
      box->wait().wait(ws);
      for (auto& f : box->take()) {
        if (!f) {
          stop = true;
          continue;
        }
        f();
      }
      // A ready mailbox makes wait() return without looking at the sockets: read them now,
      // so cancels and disconnects are seen however busy the engine keeps the mailbox.
      ws.poll();
    }
    // The engine has stopped (every request it held ended): let the last replies, and the
    // typed ShuttingDown of calls that arrive meanwhile, reach their clients before the
    // sockets close: run until no call has been open for kCloseQuiet, for at most kCloseGrace.
    using Clock = std::chrono::steady_clock;
    const auto until = Clock::now() + kCloseGrace;
    auto quiet_since = Clock::now();
    while (Clock::now() < until && Clock::now() - quiet_since < kCloseQuiet) {
      for (auto& f : box->take())
        if (f) f();
      ws.poll();
      if (front.open_calls() > 0) quiet_since = Clock::now();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
};

RpcServer::RpcServer(ServingBackend& backend, RpcServerOptions options)
    : impl_(std::make_unique<Impl>(backend, std::move(options))) {}

RpcServer::~RpcServer() { stop(); }

void RpcServer::start() {
  TANDEM_CHECK(!impl_->started, "RpcServer::start called twice");
  impl_->started = true;
  impl_->prep = std::make_shared<PrepWorker>(impl_->opt.max_preparing);
  start_loop_thread(impl_->thread, impl_->ready, [this] { impl_->run(); },
                    fmt::format("serve: cannot listen on {} (serve.listen) / '{}' (serve.metrics_listen)",
                                impl_->opt.listen, impl_->opt.metrics_listen));
}

void RpcServer::stop() {
  if (!impl_ || !impl_->started || impl_->stopping) return;
  impl_->stopping = true;
  impl_->box->post(nullptr);  // an empty closure ends the loop
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->prep) impl_->prep->stop();  // after the loop: nothing posts to it any more
}

int RpcServer::port() const { return impl_->port; }
int RpcServer::metrics_port() const { return impl_->metrics_port; }

}  // namespace tandem::serve
