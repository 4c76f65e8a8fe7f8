// Synchronous Cap'n Proto client (contract in rpc_client.h).
#include "serve/rpc_client.h"

#include <capnp/ez-rpc.h>
#include <fmt/format.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include <stdexcept>
#include <type_traits>

#include "serve/rpc_convert.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

namespace {

using Outcome = RpcClient::GenerateOutcome;

template <typename R>
kj::Promise<capnp::Response<R>> plain(capnp::RemotePromise<R>&& r) {
  return kj::mv(r);
}

// What one generate call shares between its TokenSink and its reply.
struct CallState {
  RpcClient::TokenCallback on_tokens;
  int32_t received = 0;
  bool stopped = false;  // cancelled by on_tokens, or the outcome was delivered
  kj::Own<kj::PromiseFulfiller<void>> cancel;
};

// The client's TokenSink: hands each batch to the callback; a false return asks for cancel.
// After the call ended it drops whatever still arrives (the callback may reference a caller's
// frame that is gone by then).
class SinkImpl final : public rpc::TokenSink::Server {
 public:
  explicit SinkImpl(std::shared_ptr<CallState> call) : call_(std::move(call)) {}
  kj::Promise<void> tokens(TokensContext context) override {
    if (call_->stopped) return kj::READY_NOW;
    std::vector<TokenPiece> pieces;
    for (auto t : context.getParams().getTokens()) pieces.push_back({t.getId(), t.getText()});
    call_->received += static_cast<int32_t>(pieces.size());
    if (!call_->on_tokens(pieces)) {
      call_->stopped = true;
      call_->cancel->fulfill();
    }
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<CallState> call_;
};

Outcome outcome_of(rpc::Outcome::Reader o) {
  Outcome out;
  if (o.isResult()) {
    out.ok = true;
    out.result = from_capnp(o.getResult());
  } else {
    auto e = o.getError();
    const auto kind = static_cast<unsigned>(e.getKind());
    // A kind this client does not know (a newer server) reads as internal.
    out.error_kind = kind <= static_cast<unsigned>(ErrorKind::Internal) ? static_cast<ErrorKind>(kind)
                                                                       : ErrorKind::Internal;
    out.error_message = e.getMessage();
    out.retry_after_s = e.getRetryAfterS();
  }
  return out;
}

}  // namespace

struct RpcClient::Impl {
  std::string addr;
  double timeout_s;
  capnp::EzRpcClient client;
  rpc::Tandem::Client cap;
  int in_flight = 0;
  kj::Own<kj::PromiseFulfiller<void>> idle;  // set while run_until_idle waits
  struct Errors final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}  // start() turns every failure into on_done
  } errors;
  kj::TaskSet tasks{errors};

  Impl(const std::string& a, double t) : addr(a), timeout_s(t), client(a), cap(client.getMain<rpc::Tandem>()) {}

  kj::Timer& timer() { return client.getIoProvider().getTimer(); }

  // Runs what is ready without blocking: a call dropped just now (a cancel) sends its Finish
  // message here, not only when the loop next runs (maybe never, if the caller goes idle).
  void flush() { client.getWaitScope().poll(); }

  // Waits for p on this thread's loop, within limit_s when > 0; failures become
  // std::runtime_error naming the address and the call.
  template <typename T>
  T wait(kj::Promise<T> p, const char* what, double limit_s) {
    if (limit_s > 0) {
      p = p.exclusiveJoin(timer().afterDelay(static_cast<int64_t>(limit_s * 1e6) * kj::MICROSECONDS)
                              .then([what, limit_s]() -> kj::Promise<T> {
                                return KJ_EXCEPTION(FAILED, kj::str(what, ": no reply within ", limit_s, " s"));
                              }));
    }
    try {
      if constexpr (std::is_void_v<T>) {
        p.wait(client.getWaitScope());
        flush();
      } else {
        T out = p.wait(client.getWaitScope());
        flush();
        return out;
      }
    } catch (const kj::Exception& e) {
      throw std::runtime_error(
          fmt::format("tandem server at {}: {}: {}", addr, what, e.getDescription().cStr()));
    }
  }

  kj::Promise<Outcome> call(const GenerateRequest& req, TokenCallback on_tokens) {
    auto request = cap.generateRequest();
    to_capnp(req, request.initParams());
    auto state = std::make_shared<CallState>();
    state->on_tokens = std::move(on_tokens);
    auto cancel = kj::newPromiseAndFulfiller<void>();
    state->cancel = kj::mv(cancel.fulfiller);
    request.setSink(kj::heap<SinkImpl>(state));
    // The server sends every token call before the reply, and this side reads them in that
    // order, but a token call is dispatched to the sink in a later turn than the message that
    // carried it: evalLast lets those turns run before the outcome is handed on.
    auto reply = request.send().then([](capnp::Response<rpc::Tandem::GenerateResults>&& r) {
      return kj::evalLast([o = outcome_of(r.getOutcome())]() mutable { return kj::mv(o); });
    });
    auto cancelled = cancel.promise.then([] {
      Outcome o;
      o.cancelled = true;
      return o;
    });
    return reply.exclusiveJoin(kj::mv(cancelled)).then(
        [state](Outcome&& o) {
          o.tokens_received = state->received;
          state->stopped = true;
          state->on_tokens = nullptr;
          return kj::mv(o);
        },
        [state](kj::Exception&& e) -> Outcome {
          state->stopped = true;
          state->on_tokens = nullptr;
          kj::throwFatalException(kj::mv(e));
        });
  }

  void ended() {
    if (--in_flight == 0 && idle) {
      idle->fulfill();
      idle = nullptr;
    }
  }
};

RpcClient::RpcClient(const std::string& host_port, double timeout_s) {
  try {
    impl_ = std::make_unique<Impl>(host_port, timeout_s);
  } catch (const kj::Exception& e) {
    throw std::runtime_error(
        fmt::format("tandem server at {}: bad address: {}", host_port, e.getDescription().cStr()));
  }
  // Bootstrapping resolves once the server answered: a refused or unreachable address fails here.
  impl_->wait(impl_->cap.whenResolved(), "connect", timeout_s > 0 ? timeout_s : kDefaultConnectTimeoutS);
}

RpcClient::~RpcClient() = default;

const std::string& RpcClient::address() const { return impl_->addr; }

RpcClient::GenerateOutcome RpcClient::generate(const GenerateRequest& req, const TokenCallback& on_tokens) {
  return impl_->wait(impl_->call(req, on_tokens), "generate", impl_->timeout_s);
}

HealthInfo RpcClient::health() {
  auto r = impl_->wait(plain(impl_->cap.healthRequest().send()), "health", impl_->timeout_s);
  return HealthInfo{r.getLive(), r.getReady(), r.getDetail()};
}

StatsSnapshot RpcClient::stats() {
  auto r = impl_->wait(plain(impl_->cap.statsRequest().send()), "stats", impl_->timeout_s);
  return from_capnp(r.getStats());
}

ModelInfo RpcClient::model_info() {
  auto r = impl_->wait(plain(impl_->cap.modelInfoRequest().send()), "modelInfo", impl_->timeout_s);
  return from_capnp(r.getInfo());
}

void RpcClient::start(const GenerateRequest& req, TokenCallback on_tokens, DoneCallback on_done) {
  ++impl_->in_flight;
  Impl* impl = impl_.get();
  auto done = std::make_shared<DoneCallback>(std::move(on_done));
  impl_->tasks.add(impl_->call(req, std::move(on_tokens))
                       .then(
                           [impl, done](Outcome&& o) {
                             impl->ended();
                             (*done)(o);
                           },
                           [impl, done](kj::Exception&& e) {
                             impl->ended();
                             Outcome o;
                             o.error_kind = ErrorKind::Internal;
                             o.error_message = fmt::format("rpc: tandem server at {}: {}", impl->addr,
                                                           e.getDescription().cStr());
                             (*done)(o);
                           }));
}

void RpcClient::wait_ms(double ms) {
  if (ms <= 0) return;
  impl_->timer().afterDelay(static_cast<int64_t>(ms * 1000) * kj::MICROSECONDS).wait(impl_->client.getWaitScope());
}

bool RpcClient::run_until_idle(double timeout_s) {
  if (impl_->in_flight == 0) return true;
  auto paf = kj::newPromiseAndFulfiller<void>();
  impl_->idle = kj::mv(paf.fulfiller);
  kj::Promise<bool> idle = paf.promise.then([] { return true; });
  if (timeout_s > 0)
    idle = idle.exclusiveJoin(
        impl_->timer().afterDelay(static_cast<int64_t>(timeout_s * 1e6) * kj::MICROSECONDS).then([] { return false; }));
  const bool ok = idle.wait(impl_->client.getWaitScope());
  impl_->idle = nullptr;
  impl_->flush();
  return ok;
}

int RpcClient::in_flight() const { return impl_->in_flight; }

std::vector<RpcClient::GenerateOutcome> RpcClient::generate_many(const std::vector<GenerateRequest>& reqs,
                                                                 const std::vector<int>& cancel_after) {
  // Shared with the callbacks, so that calls still in flight after a timeout write nowhere stale.
  auto out = std::make_shared<std::vector<GenerateOutcome>>(reqs.size());
  auto remaining = std::make_shared<size_t>(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const int limit = i < cancel_after.size() ? cancel_after[i] : 0;
    auto seen = std::make_shared<int>(0);
    start(
        reqs[i],
        [limit, seen](const std::vector<TokenPiece>& ps) {
          *seen += static_cast<int>(ps.size());
          return limit <= 0 || *seen < limit;
        },
        [out, i, remaining](const GenerateOutcome& o) {
          (*out)[i] = o;
          --*remaining;
        });
  }
  if (!run_until_idle(impl_->timeout_s) && *remaining > 0)
    throw std::runtime_error(fmt::format("tandem server at {}: generate_many: {} of {} requests not done within {} s",
                                         impl_->addr, *remaining, reqs.size(), impl_->timeout_s));
  return std::move(*out);
}

}  // namespace tandem::serve
