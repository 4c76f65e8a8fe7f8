// RawClient: a Cap'n Proto client of serve/tandem.capnp for the front-end tests, one level
// below serve::RpcClient: its TokenSink can be slow, stall or throw, it can send parameters of
// the wrong type, and it records when each token call ran and when the Outcome arrived.
//
// Contract: one thread, one event loop (capnp::EzRpcClient), like RpcClient. generate() runs
// the loop until the Outcome arrives or the connection fails (then `rpc_error` is set); the
// sink's behaviour is the one given. Times are seconds since the client was made.
#pragma once

#include <capnp/ez-rpc.h>
#include <kj/async-io.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "serve/rpc_convert.h"
#include "serve/tandem.capnp.h"

namespace tandem::serve::testing {

enum class SinkMode { Prompt, Slow, Stall, Throw };

struct SinkLog {
  std::vector<int32_t> ids;          // in the order the sink processed them
  std::vector<size_t> call_sizes;    // tokens per call
  std::vector<double> call_done_at;  // when each call's processing finished
};

struct RawOutcome {
  bool rpc_failed = false;  // the call itself failed (connection closed, RPC exception)
  std::string rpc_error;
  bool ok = false;
  ErrorKind kind = ErrorKind::Internal;
  std::string message;
  GenerateResult result;
  double at = 0.0;                     // when the Outcome arrived
  size_t tokens_done_at_outcome = 0;   // tokens the sink had finished processing by then
};

class RawClient {
 public:
  explicit RawClient(const std::string& addr)
      : client_(addr), cap_(client_.getMain<rpc::Tandem>()), t0_(std::chrono::steady_clock::now()) {}

  double now() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
  kj::WaitScope& ws() { return client_.getWaitScope(); }
  kj::Timer& timer() { return client_.getIoProvider().getTimer(); }
  rpc::Tandem::Client& cap() { return cap_; }

  // mode Slow: each call takes delay_s; Stall: no call ever returns; Throw: the first throws.
  RawOutcome generate(const GenerateRequest& req, SinkMode mode, double delay_s, SinkLog& log) {
    auto request = cap_.generateRequest();
    to_capnp(req, request.initParams());
    request.setSink(kj::heap<Sink>(*this, mode, delay_s, log));
    return finish(request.send(), log);
  }

  // Sends generate with a null sink.
  RawOutcome generate_without_sink(const GenerateRequest& req) {
    auto request = cap_.generateRequest();
    to_capnp(req, request.initParams());
    SinkLog none;
    return finish(request.send(), none);
  }

  // Sends generate whose `params` pointer is a Text instead of a GenerateParams struct.
  RawOutcome generate_with_text_params(const std::string& text) {
    auto request = cap_.typelessRequest(capnp::typeId<rpc::Tandem>(), 0, nullptr);
    auto root = request.initAsAnyStruct(0, 2);  // Tandem.generate's params: (params, sink)
    root.getPointerSection()[0].setAs<capnp::Text>(text);
    RawOutcome out;
    try {
      auto r = request.send().wait(ws());
      read_outcome(r.getAs<rpc::Tandem::GenerateResults>().getOutcome(), out);
    } catch (const kj::Exception& e) {
      out.rpc_failed = true;
      out.rpc_error = e.getDescription().cStr();
    }
    return out;
  }

  bool health_ok() { return cap_.healthRequest().send().wait(ws()).getLive(); }

 private:
  class Sink final : public rpc::TokenSink::Server {
   public:
    Sink(RawClient& c, SinkMode mode, double delay_s, SinkLog& log) : c_(c), mode_(mode), delay_s_(delay_s), log_(log) {}
    kj::Promise<void> tokens(TokensContext context) override {
      if (mode_ == SinkMode::Throw) KJ_FAIL_REQUIRE("the test's sink refuses tokens");
      std::vector<int32_t> ids;
      for (auto t : context.getParams().getTokens()) ids.push_back(t.getId());
      if (mode_ == SinkMode::Stall) return kj::NEVER_DONE;
      auto record = [this, ids = std::move(ids)] {
        log_.ids.insert(log_.ids.end(), ids.begin(), ids.end());
        log_.call_sizes.push_back(ids.size());
        log_.call_done_at.push_back(c_.now());
      };
      if (mode_ == SinkMode::Slow)
        return c_.timer().afterDelay(static_cast<int64_t>(delay_s_ * 1e6) * kj::MICROSECONDS).then(kj::mv(record));
      record();
      return kj::READY_NOW;
    }

   private:
    RawClient& c_;
    SinkMode mode_;
    double delay_s_;
    SinkLog& log_;
  };

  RawOutcome finish(capnp::RemotePromise<rpc::Tandem::GenerateResults>&& p, SinkLog& log) {
    RawOutcome out;
    try {
      auto r = p.wait(ws());
      out.at = now();
      out.tokens_done_at_outcome = log.ids.size();
      read_outcome(r.getOutcome(), out);
    } catch (const kj::Exception& e) {
      out.rpc_failed = true;
      out.rpc_error = e.getDescription().cStr();
    }
    return out;
  }

  static void read_outcome(rpc::Outcome::Reader o, RawOutcome& out) {
    if (o.isResult()) {
      out.ok = true;
      out.result = from_capnp(o.getResult());
    } else {
      out.kind = static_cast<ErrorKind>(o.getError().getKind());
      auto m = o.getError().getMessage();
      out.message.assign(m.begin(), m.size());
    }
  }

  capnp::EzRpcClient client_;
  rpc::Tandem::Client cap_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace tandem::serve::testing
