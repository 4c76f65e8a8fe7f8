// The data-parallel front end: round-robin forwarding to the replicas' RPC servers (contract
// in rpc_router.h).
#include "serve/rpc_router.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <spdlog/spdlog.h>

#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "runtime/core/error.h"
#include "serve/kj_glue.h"
#include "serve/metrics_text.h"
#include "serve/rpc_connections.h"
#include "serve/rpc_convert.h"
#include "serve/stats_merge.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

namespace {

struct Upstream {
  std::string addr;
  kj::Own<kj::AsyncIoStream> conn;
  kj::Own<capnp::TwoPartyClient> rpc;
  rpc::Tandem::Client cap = nullptr;
};

// The replicas' servers close a connection that idles for serve.idle_timeout_s; the router's
// connection to each is kept busy with a `health` call three times per idle period.
kj::Promise<void> keep_alive(kj::Timer& timer, Upstream& u, kj::Duration every) {
  return timer.afterDelay(every)
      .then([&u] { return u.cap.healthRequest().send().ignoreResult(); })
      .then([&timer, &u, every] { return keep_alive(timer, u, every); },
            [addr = u.addr](kj::Exception&& e) {
              spdlog::warn("serve router: replica at {} stopped answering its keep-alive: {}", addr,
                           e.getDescription().cStr());
            });
}

bool worth_another_replica(rpc::Outcome::Reader o) {
  if (!o.isError()) return false;
  const auto k = o.getError().getKind();
  return k == rpc::ErrorKind::OVERLOADED || k == rpc::ErrorKind::SHUTTING_DOWN;
}

// Every replica's stats, merged; a replica that does not answer fails the whole call.
kj::Promise<StatsSnapshot> gather_stats(std::vector<Upstream>& ups) {
  auto builder = kj::heapArrayBuilder<kj::Promise<StatsSnapshot>>(ups.size());
  for (size_t i = 0; i < ups.size(); ++i) {
    builder.add(ups[i].cap.statsRequest().send().then(
        [](capnp::Response<rpc::Tandem::StatsResults>&& r) { return from_capnp(r.getStats()); },
        [addr = ups[i].addr, i](kj::Exception&& e) -> StatsSnapshot {
          throw std::runtime_error(fmt::format("stats of replica {} ({}) failed: {}", i, addr,
                                               e.getDescription().cStr()));
        }));
  }
  return kj::joinPromises(builder.finish()).then([](kj::Array<StatsSnapshot> all) {
    return merge_replica_stats(std::vector<StatsSnapshot>(all.begin(), all.end()));
  });
}

kj::Promise<ModelInfo> replica0_info(std::vector<Upstream>& ups) {
  const int n = static_cast<int>(ups.size());
  return ups[0].cap.modelInfoRequest().send().then(
      [n](capnp::Response<rpc::Tandem::ModelInfoResults>&& r) {
        ModelInfo m = from_capnp(r.getInfo());
        m.dp = n;  // replica 0's layout string already names dp x tp x pp
        return m;
      });
}

// The bootstrap of one client connection (round-robin state shared by all of them): every
// call marks the connection busy while it runs.
class RouterImpl final : public rpc::Tandem::Server {
 public:
  RouterImpl(std::vector<Upstream>& ups, size_t& next, std::shared_ptr<ConnectionActivity> activity)
      : ups_(ups), next_(next), activity_(std::move(activity)) {}

  DispatchCallResult dispatchCall(uint64_t interface_id, uint16_t method_id,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    return track_call(activity_, [&] { return rpc::Tandem::Server::dispatchCall(interface_id, method_id, context); });
  }

  kj::Promise<void> generate(GenerateContext context) override {
    context.allowCancellation();
    const size_t first = next_++ % ups_.size();
    return forward(context, first, 0);
  }

  kj::Promise<void> health(HealthContext context) override {
    auto builder = kj::heapArrayBuilder<kj::Promise<HealthInfo>>(ups_.size());
    for (auto& u : ups_) {
      builder.add(u.cap.healthRequest().send().then(
          [](capnp::Response<rpc::Tandem::HealthResults>&& r) {
            return HealthInfo{r.getLive(), r.getReady(), text_of(r.getDetail())};
          },
          [](kj::Exception&& e) {
            return HealthInfo{false, false, std::string("unreachable: ") + e.getDescription().cStr()};
          }));
    }
    return kj::joinPromises(builder.finish()).then([context](kj::Array<HealthInfo> hs) mutable {
      bool ready = true;
      std::string detail;
      for (size_t i = 0; i < hs.size(); ++i) {
        ready = ready && hs[i].live && hs[i].ready;
        detail += fmt::format("{}replica {}: {}{}", i ? "; " : "", i, hs[i].ready ? "ready" : "not ready",
                              hs[i].detail.empty() ? "" : " (" + hs[i].detail + ")");
      }
      auto r = context.getResults();
      r.setLive(true);
      r.setReady(ready);
      r.setDetail(detail);
    });
  }

  kj::Promise<void> stats(StatsContext context) override {
    return gather_stats(ups_).then([context](StatsSnapshot s) mutable {
      to_capnp(s, context.getResults().initStats());
    });
  }

  kj::Promise<void> modelInfo(ModelInfoContext context) override {
    return replica0_info(ups_).then([context](ModelInfo m) mutable {
      to_capnp(m, context.getResults().initInfo());
    });
  }

 private:
  kj::Promise<void> forward(GenerateContext context, size_t i, size_t tried) {
    auto params = context.getParams();
    auto req = ups_[i].cap.generateRequest();
    req.setParams(params.getParams());
    req.setSink(params.getSink());
    return req.send().then(
        [this, context, i, tried](capnp::Response<rpc::Tandem::GenerateResults>&& r) mutable -> kj::Promise<void> {
          auto o = r.getOutcome();
          if (worth_another_replica(o) && tried + 1 < ups_.size())
            return forward(context, (i + 1) % ups_.size(), tried + 1);
          auto results = context.getResults();
          results.setOutcome(o);
          if (o.isResult()) results.getOutcome().getResult().setReplica(static_cast<int32_t>(i));
          return kj::READY_NOW;
        },
        [this, context, i](kj::Exception&& e) mutable {
          auto err = context.getResults().initOutcome().initError();
          err.setKind(rpc::ErrorKind::INTERNAL);
          err.setMessage(fmt::format("replica {} ({}) failed: {}", i, ups_[i].addr, e.getDescription().cStr()));
        });
  }

  std::vector<Upstream>& ups_;
  size_t& next_;
  std::shared_ptr<ConnectionActivity> activity_;
};

class RouterMetrics final : public kj::HttpService {
 public:
  RouterMetrics(std::vector<Upstream>& ups, const kj::HttpHeaderTable& table) : ups_(ups), table_(table) {}
  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&,
                            kj::AsyncInputStream&, Response& response) override {
    if (!is_metrics_get(method, url)) return send_text(response, table_, 404, "Not Found", kMetricsNotFound);
    return gather_stats(ups_).then([this](StatsSnapshot s) {
      return replica0_info(ups_).then([s = kj::mv(s)](ModelInfo m) { return prometheus_text(s, m); });
    }).then(
        [this, &response](std::string text) { return send_text(response, table_, 200, "OK", text); },
        [this, &response](kj::Exception&& e) {
          return send_text(response, table_, 503, "Service Unavailable",
                           std::string("a replica did not answer: ") + e.getDescription().cStr() + "\n");
        });
  }

 private:
  std::vector<Upstream>& ups_;
  const kj::HttpHeaderTable& table_;
};

}  // namespace

struct RpcRouter::Impl {
  RpcRouterOptions opt;
  std::thread thread;
  std::promise<void> ready;
  int port = 0, metrics_port = 0;
  bool started = false, stopping = false;

  std::mutex mu;  // guards stop_fulfiller and stop_now
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_fulfiller;
  bool stop_now = false;

  bool listening = false;

  void run() { run_loop_body(ready, listening, "serve router", [this] { loop(); }); }

  void loop() {
    auto io = kj::setupAsyncIo();
    auto& ws = io.waitScope;
    auto& network = io.provider->getNetwork();
    std::vector<Upstream> ups(opt.replicas.size());
    for (size_t i = 0; i < ups.size(); ++i) {
      Upstream& u = ups[i];
      u.addr = opt.replicas[i];
      try {
        u.conn = network.parseAddress(u.addr).wait(ws)->connect().wait(ws);
      } catch (const kj::Exception& e) {
        throw std::runtime_error(fmt::format("cannot connect to replica {} at {}: {}", i, u.addr,
                                             e.getDescription().cStr()));
      }
      u.rpc = kj::heap<capnp::TwoPartyClient>(*u.conn);
      u.cap = u.rpc->bootstrap().castAs<rpc::Tandem>();
    }
    size_t next = 0;  // round-robin over the replicas, across every client connection
    kj::HttpHeaderTable table;
    RouterMetrics metrics(ups, table);
    FrontListeners listeners(
        *io.provider, ws, opt.limits, opt.listen,
        [&](std::shared_ptr<ConnectionActivity> activity) -> capnp::Capability::Client {
          return kj::heap<RouterImpl>(ups, next, kj::mv(activity));
        },
        opt.metrics_listen, metrics, table, "serve router");
    port = listeners.port();
    metrics_port = listeners.metrics_port();
    LoggedTaskErrors errors("serve router");
    kj::TaskSet keep_alives(errors);  // destroyed before the upstreams
    if (opt.limits.idle_timeout_s > 0) {
      const auto every = static_cast<int64_t>(opt.limits.idle_timeout_s / 3 * 1e6) * kj::MICROSECONDS;
      for (Upstream& u : ups) keep_alives.add(keep_alive(io.provider->getTimer(), u, every));
    }
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard<std::mutex> lock(mu);
      stop_fulfiller = kj::mv(paf.fulfiller);
      if (stop_now) stop_fulfiller->fulfill();
    }
    ready.set_value();
    listening = true;
    paf.promise.wait(ws);
    std::lock_guard<std::mutex> lock(mu);
    stop_fulfiller = nullptr;
  }
};

RpcRouter::RpcRouter(RpcRouterOptions options) : impl_(std::make_unique<Impl>()) {
  TANDEM_CHECK(!options.replicas.empty(), "RpcRouter needs at least one replica address");
  impl_->opt = std::move(options);
}

RpcRouter::~RpcRouter() { stop(); }

void RpcRouter::start() {
  TANDEM_CHECK(!impl_->started, "RpcRouter::start called twice");
  impl_->started = true;
  start_loop_thread(impl_->thread, impl_->ready, [this] { impl_->run(); },
                    fmt::format("serve router: cannot listen on {} (serve.listen) / '{}' (serve.metrics_listen) "
                                "or reach the replicas", impl_->opt.listen, impl_->opt.metrics_listen));
}

void RpcRouter::stop() {
  if (!impl_ || !impl_->started || impl_->stopping) return;
  impl_->stopping = true;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop_now = true;
    if (impl_->stop_fulfiller) impl_->stop_fulfiller->fulfill();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

int RpcRouter::port() const { return impl_->port; }
int RpcRouter::metrics_port() const { return impl_->metrics_port; }

}  // namespace tandem::serve
