// The Cap'n Proto front end and the metrics endpoint on their own KJ thread (contract in
// rpc_server.h).
#include "serve/rpc_server.h"

#include <capnp/ez-rpc.h>
#include <kj/async-io.h>
#include <kj/compat/http.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/core/error.h"
#include "serve/kj_glue.h"
#include "serve/metrics_text.h"
#include "serve/rpc_convert.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

namespace {

constexpr auto kCloseGrace = std::chrono::seconds(2);
constexpr auto kCloseQuiet = std::chrono::milliseconds(100);

// Cross-thread hand-off into the KJ loop: any thread posts closures; the loop thread waits for
// them without polling (the first post after a wait fulfils a cross-thread promise).
class Mailbox {
 public:
  void post(std::function<void()> f) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    queue_.push_back(std::move(f));
    if (wake_) {
      wake_->fulfill();
      wake_ = nullptr;
    }
  }
  kj::Promise<void> wait() {  // loop thread
    std::lock_guard<std::mutex> lock(mu_);
    if (!queue_.empty() || closed_) return kj::READY_NOW;
    auto pair = kj::newPromiseAndCrossThreadFulfiller<void>();
    wake_ = kj::mv(pair.fulfiller);
    return kj::mv(pair.promise);
  }
  std::vector<std::function<void()>> take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::function<void()>> out;
    out.swap(queue_);
    return out;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    queue_.clear();
    wake_ = nullptr;
  }

 private:
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake_;
  bool closed_ = false;
};

// The loop-thread state of one generate call.
struct CallState {
  uint64_t id = 0;
  bool submitted = false, complete = false, sending = false, ended = false;
  std::vector<TokenPiece> pending;
  bool ok = true;
  GenerateResult result;
  ErrorKind error_kind = ErrorKind::Internal;
  std::string error_message;
  double retry_after_s = 0.0;
  kj::Maybe<rpc::TokenSink::Client> sink;
  kj::Own<kj::PromiseFulfiller<void>> done;
};

// What the engine holds for a request: posts each event to the loop thread.
class MailboxStream final : public GenerateStream {
 public:
  MailboxStream(std::shared_ptr<Mailbox> box, std::function<void(std::weak_ptr<CallState>, std::vector<TokenPiece>)> on_tokens,
                std::function<void(std::weak_ptr<CallState>)> on_end, std::weak_ptr<CallState> call)
      : box_(std::move(box)), on_tokens_(std::move(on_tokens)), on_end_(std::move(on_end)), call_(std::move(call)) {}
  void tokens(std::vector<TokenPiece> pieces) override {
    box_->post([f = on_tokens_, c = call_, p = std::move(pieces)]() mutable { f(c, std::move(p)); });
  }
  void finished(const GenerateResult& r) override {
    box_->post([f = on_end_, c = call_, r] {
      if (auto s = c.lock()) {
        s->ok = true;
        s->result = r;
        s->ended = true;
      }
      f(c);
    });
  }
  void failed(const ServeError& e) override {
    box_->post([f = on_end_, c = call_, kind = e.kind(), msg = std::string(e.what()), retry = e.retry_after_s()] {
      if (auto s = c.lock()) {
        s->ok = false;
        s->error_kind = kind;
        s->error_message = msg;
        s->retry_after_s = retry;
        s->ended = true;
      }
      f(c);
    });
  }

 private:
  std::shared_ptr<Mailbox> box_;
  std::function<void(std::weak_ptr<CallState>, std::vector<TokenPiece>)> on_tokens_;
  std::function<void(std::weak_ptr<CallState>)> on_end_;
  std::weak_ptr<CallState> call_;
};

void write_error(rpc::Outcome::Builder o, ErrorKind kind, const std::string& msg, double retry) {
  auto e = o.initError();
  e.setKind(static_cast<rpc::ErrorKind>(kind));
  e.setMessage(msg);
  e.setRetryAfterS(retry);
}

class TandemImpl final : public rpc::Tandem::Server {
 public:
  TandemImpl(ServingBackend& backend, std::shared_ptr<Mailbox> box, kj::TaskSet& tasks)
      : backend_(backend), box_(std::move(box)), tasks_(tasks) {}

  kj::Promise<void> generate(GenerateContext context) override {
    context.allowCancellation();
    auto params = context.getParams();
    GenerateRequest req = from_capnp(params.getParams());
    auto state = std::make_shared<CallState>();
    state->sink = params.getSink();
    auto stream = std::make_shared<MailboxStream>(
        box_, [this](std::weak_ptr<CallState> c, std::vector<TokenPiece> p) { on_tokens(c, std::move(p)); },
        [this](std::weak_ptr<CallState> c) { maybe_complete(c); }, state);
    try {
      state->id = backend_.submit(std::move(req), stream);
    } catch (const ServeError& e) {
      write_error(context.getResults().initOutcome(), e.kind(), e.what(), e.retry_after_s());
      return kj::READY_NOW;
    } catch (const std::exception& e) {
      write_error(context.getResults().initOutcome(), ErrorKind::Internal, e.what(), 0.0);
      return kj::READY_NOW;
    }
    state->submitted = true;
    ++open_calls_;
    auto paf = kj::newPromiseAndFulfiller<void>();
    state->done = kj::mv(paf.fulfiller);
    // Runs when the call's promise is destroyed: after completion, or when the client dropped
    // the call or the connection (then the request is cancelled).
    auto guard = kj::defer([this, state] {
      --open_calls_;
      if (state->complete) return;
      state->complete = true;
      try {
        backend_.cancel(state->id);
      } catch (const std::exception& e) {  // never throw from a promise's destructor
        spdlog::error("serve rpc: cancel of request {} failed: {}", state->id, e.what());
      }
    });
    return paf.promise.then([context, state]() mutable {
      auto out = context.getResults().initOutcome();
      if (state->ok) to_capnp(state->result, out.initResult());
      else write_error(out, state->error_kind, state->error_message, state->retry_after_s);
    }).attach(kj::mv(guard));
  }

  kj::Promise<void> health(HealthContext context) override {
    const HealthInfo h = backend_.health();
    auto r = context.getResults();
    r.setLive(h.live);
    r.setReady(h.ready);
    r.setDetail(h.detail);
    return kj::READY_NOW;
  }

  kj::Promise<void> stats(StatsContext context) override {
    to_capnp(backend_.stats(), context.getResults().initStats());
    return kj::READY_NOW;
  }

  kj::Promise<void> modelInfo(ModelInfoContext context) override {
    to_capnp(backend_.model_info(), context.getResults().initInfo());
    return kj::READY_NOW;
  }

 private:
  void on_tokens(std::weak_ptr<CallState> c, std::vector<TokenPiece> pieces) {
    auto s = c.lock();
    if (!s || s->complete) return;
    s->pending.insert(s->pending.end(), std::make_move_iterator(pieces.begin()),
                      std::make_move_iterator(pieces.end()));
    send_pending(s);
  }

  // One streaming call at a time per request; pieces that arrive meanwhile go in the next.
  void send_pending(const std::shared_ptr<CallState>& s) {
    if (s->sending || s->pending.empty()) return;
    KJ_IF_MAYBE(sink, s->sink) {
      auto req = sink->tokensRequest();
      to_capnp(s->pending, req.initTokens(static_cast<unsigned>(s->pending.size())));
      s->pending.clear();
      s->sending = true;
      std::weak_ptr<CallState> w = s;
      tasks_.add(req.send().then(
          [this, w] {
            auto st = w.lock();
            if (!st) return;
            st->sending = false;
            send_pending(st);
            maybe_complete(w);
          },
          [this, w](kj::Exception&& e) {
            auto st = w.lock();
            if (!st || st->complete) return;
            // The client's sink is gone: stop generating and end the call.
            backend_.cancel(st->id);
            st->complete = true;
            st->ok = false;
            st->error_kind = ErrorKind::Internal;
            st->error_message = std::string("token sink failed: ") + e.getDescription().cStr();
            st->done->fulfill();
          }));
    }
  }

  void maybe_complete(std::weak_ptr<CallState> c) {
    auto s = c.lock();
    if (!s || s->complete || !s->ended || s->sending || !s->pending.empty()) return;
    s->complete = true;
    s->done->fulfill();
  }

  ServingBackend& backend_;
  std::shared_ptr<Mailbox> box_;
  kj::TaskSet& tasks_;
  int open_calls_ = 0;  // generate calls submitted and not yet returned (loop thread only)

 public:
  int open_calls() const { return open_calls_; }
};

class MetricsService final : public kj::HttpService {
 public:
  MetricsService(ServingBackend& backend, const kj::HttpHeaderTable& table) : backend_(backend), table_(table) {}
  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&,
                            kj::AsyncInputStream&, Response& response) override {
    if (!is_metrics_get(method, url)) return send_text(response, table_, 404, "Not Found", kMetricsNotFound);
    return send_text(response, table_, 200, "OK", prometheus_text(backend_.stats(), backend_.model_info()));
  }

 private:
  ServingBackend& backend_;
  const kj::HttpHeaderTable& table_;
};

}  // namespace

struct RpcServer::Impl {
  ServingBackend& backend;
  RpcServerOptions opt;
  std::thread thread;
  std::shared_ptr<Mailbox> box = std::make_shared<Mailbox>();
  int port = 0, metrics_port = 0;
  bool started = false, stopping = false;

  std::promise<void> ready;
  bool listening = false;

  void run() {
    run_loop_body(ready, listening, "serve rpc", [this] { loop(); });
    box->close();
  }

  void loop() {
    LoggedTaskErrors errors("serve rpc");
    // Tasks hold promises of the loop below and of the HTTP server: destroyed first (the
    // KJ_DEFER after the last object they use), while the event loop still exists.
    auto tasks = std::make_unique<kj::TaskSet>(errors);
    auto main = kj::heap<TandemImpl>(backend, box, *tasks);
    const TandemImpl* impl = main.get();
    capnp::EzRpcServer server(kj::mv(main), opt.listen);
    auto& ws = server.getWaitScope();
    port = static_cast<int>(server.getPort().wait(ws));
    kj::HttpHeaderTable table;
    MetricsService metrics(backend, table);
    kj::Own<kj::HttpServer> http;
    kj::Own<kj::ConnectionReceiver> metrics_listener;
    KJ_DEFER(tasks.reset());
    if (!opt.metrics_listen.empty()) {
      auto addr = server.getIoProvider().getNetwork().parseAddress(opt.metrics_listen).wait(ws);
      metrics_listener = addr->listen();
      metrics_port = static_cast<int>(metrics_listener->getPort());
      http = kj::heap<kj::HttpServer>(server.getIoProvider().getTimer(), table, metrics);
      tasks->add(http->listenHttp(*metrics_listener));
    }
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
      if (impl->open_calls() > 0) quiet_since = Clock::now();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
};

RpcServer::RpcServer(ServingBackend& backend, RpcServerOptions options)
    : impl_(std::make_unique<Impl>(Impl{backend, std::move(options)})) {}

RpcServer::~RpcServer() { stop(); }

void RpcServer::start() {
  TANDEM_CHECK(!impl_->started, "RpcServer::start called twice");
  impl_->started = true;
  start_loop_thread(impl_->thread, impl_->ready, [this] { impl_->run(); },
                    fmt::format("serve: cannot listen on {} (serve.listen) / '{}' (serve.metrics_listen)",
                                impl_->opt.listen, impl_->opt.metrics_listen));
}

void RpcServer::stop() {
  if (!impl_ || !impl_->started || impl_->stopping) return;
  impl_->stopping = true;
  impl_->box->post(nullptr);  // an empty closure ends the loop
  if (impl_->thread.joinable()) impl_->thread.join();
}

int RpcServer::port() const { return impl_->port; }
int RpcServer::metrics_port() const { return impl_->metrics_port; }

}  // namespace tandem::serve
