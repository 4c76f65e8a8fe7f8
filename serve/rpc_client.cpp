// Synchronous Cap'n Proto client (contract in rpc_client.h).
#include "serve/rpc_client.h"

#include <capnp/ez-rpc.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include <stdexcept>

#include "serve/rpc_convert.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve {

namespace {

// The client's TokenSink: hands each batch to the callback; a false return asks for cancel.
class SinkImpl final : public rpc::TokenSink::Server {
 public:
  SinkImpl(RpcClient::TokenCallback cb, kj::Own<kj::PromiseFulfiller<void>> cancel)
      : cb_(std::move(cb)), cancel_(kj::mv(cancel)) {}
  kj::Promise<void> tokens(TokensContext context) override {
    if (stopped_) return kj::READY_NOW;
    std::vector<TokenPiece> pieces;
    for (auto t : context.getParams().getTokens()) pieces.push_back({t.getId(), text_of(t.getText())});
    if (!cb_(pieces)) {
      stopped_ = true;
      cancel_->fulfill();
    }
    return kj::READY_NOW;
  }

 private:
  RpcClient::TokenCallback cb_;
  kj::Own<kj::PromiseFulfiller<void>> cancel_;
  bool stopped_ = false;
};

RpcClient::GenerateOutcome outcome_of(rpc::Outcome::Reader o) {
  RpcClient::GenerateOutcome out;
  if (o.isResult()) {
    out.ok = true;
    out.result = from_capnp(o.getResult());
  } else {
    auto e = o.getError();
    out.error_kind = static_cast<ErrorKind>(e.getKind());
    out.error_message = text_of(e.getMessage());
    out.retry_after_s = e.getRetryAfterS();
  }
  return out;
}

}  // namespace

struct RpcClient::Impl {
  std::string addr;
  capnp::EzRpcClient client;
  rpc::Tandem::Client cap;
  kj::TaskSet::ErrorHandler* handler = nullptr;
  int in_flight = 0;
  struct Errors final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&&) override {}
  } errors;
  kj::TaskSet tasks{errors};

  explicit Impl(const std::string& a) : addr(a), client(a), cap(client.getMain<rpc::Tandem>()) {}

  kj::Promise<GenerateOutcome> call(const GenerateRequest& req, TokenCallback on_tokens) {
    auto request = cap.generateRequest();
    to_capnp(req, request.initParams());
    auto cancel = kj::newPromiseAndFulfiller<void>();
    request.setSink(kj::heap<SinkImpl>(std::move(on_tokens), kj::mv(cancel.fulfiller)));
    auto reply = request.send().then([](capnp::Response<rpc::Tandem::GenerateResults>&& r) {
      return outcome_of(r.getOutcome());
    });
    auto cancelled = cancel.promise.then([] {
      GenerateOutcome o;
      o.cancelled = true;
      return o;
    });
    return reply.exclusiveJoin(kj::mv(cancelled));
  }

  [[noreturn]] void rethrow(const kj::Exception& e) {
    throw std::runtime_error("tandem server at " + addr + ": " + std::string(e.getDescription().cStr()));
  }
};

RpcClient::RpcClient(const std::string& host_port) : impl_(std::make_unique<Impl>(host_port)) {}
RpcClient::~RpcClient() = default;

template <class F>
auto RpcClient::blocking(F&& f) -> decltype(f(std::declval<kj::WaitScope&>())) {
  auto& ws = impl_->client.getWaitScope();
  try {
    auto out = f(ws);
    ws.poll();  // write what the call left queued (e.g. the drop of a cancelled generate)
    return out;
  } catch (const kj::Exception& e) {
    impl_->rethrow(e);
  }
}

RpcClient::GenerateOutcome RpcClient::generate(const GenerateRequest& req, const TokenCallback& on_tokens) {
  return blocking([&](kj::WaitScope& ws) { return impl_->call(req, on_tokens).wait(ws); });
}

HealthInfo RpcClient::health() {
  return blocking([&](kj::WaitScope& ws) {
    auto r = impl_->cap.healthRequest().send().wait(ws);
    return HealthInfo{r.getLive(), r.getReady(), text_of(r.getDetail())};
  });
}

StatsSnapshot RpcClient::stats() {
  return blocking([&](kj::WaitScope& ws) { return from_capnp(impl_->cap.statsRequest().send().wait(ws).getStats()); });
}

ModelInfo RpcClient::model_info() {
  return blocking([&](kj::WaitScope& ws) {
    return from_capnp(impl_->cap.modelInfoRequest().send().wait(ws).getInfo());
  });
}

void RpcClient::start(const GenerateRequest& req, TokenCallback on_tokens,
                      std::function<void(const GenerateOutcome&)> on_done) {
  ++impl_->in_flight;
  Impl* impl = impl_.get();
  impl_->tasks.add(impl_->call(req, std::move(on_tokens))
                       .then(
                           [impl, on_done](GenerateOutcome&& o) {
                             --impl->in_flight;
                             on_done(o);
                           },
                           [impl, on_done](kj::Exception&& e) {
                             --impl->in_flight;
                             GenerateOutcome o;
                             o.error_kind = ErrorKind::Internal;
                             o.error_message = std::string("rpc: ") + e.getDescription().cStr();
                             on_done(o);
                           }));
}

void RpcClient::wait_ms(double ms) {
  auto& ws = impl_->client.getWaitScope();
  impl_->client.getIoProvider().getTimer().afterDelay(static_cast<int64_t>(ms * 1000) * kj::MICROSECONDS).wait(ws);
}

void RpcClient::run_until_idle() {
  while (impl_->in_flight > 0) wait_ms(2);
}

int RpcClient::in_flight() const { return impl_->in_flight; }

}  // namespace tandem::serve
