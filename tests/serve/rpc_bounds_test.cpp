// The RPC front end under clients that misbehave, against the model-free backend
// (tests/serve/fake_backend.h) over real TCP sockets on 127.0.0.1, through a raw Cap'n Proto
// client (tests/serve/raw_client.h): a slow sink gets every token before the Outcome, batched;
// a stalled sink or a throwing one ends its request (deadlineExceeded / internal), frees it in
// the backend and is counted once; a null sink, parameters of the wrong type and an unknown
// priority get typed invalid requests; a NUL stays in a prompt; a message over the limit
// closes only its own connection; connections beyond the limit are closed, idle ones too (a
// busy one is kept); slow request preparation never stalls another connection's `health`.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "serve/rpc_client.h"
#include "serve/rpc_server.h"
#include "tests/serve/fake_backend.h"
#include "tests/serve/raw_client.h"

namespace tandem::serve {
namespace {

using testing::FakeBackend;
using testing::RawClient;
using testing::RawOutcome;
using testing::SinkLog;
using testing::SinkMode;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Served {
  FakeBackend backend;
  RpcServer server;
  explicit Served(RpcServerOptions o = {}, std::chrono::microseconds interval = std::chrono::microseconds(500))
      : backend(1000, interval), server(backend, std::move(o)) {
    server.start();
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(server.port()); }
  StatsSnapshot stats() { return RpcClient(addr()).stats(); }
};

GenerateRequest tokens_req(int prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt_tokens.assign(static_cast<size_t>(prompt), 5);
  r.max_tokens = max_tokens;
  return r;
}

TEST(RpcBounds, ASlowSinkGetsEveryTokenBeforeTheOutcomeInBatches) {
  Served s;
  RawClient c(s.addr());
  SinkLog log;
  const RawOutcome o = c.generate(tokens_req(3, 40), SinkMode::Slow, 0.05, log);
  ASSERT_TRUE(o.ok) << o.message << o.rpc_error;
  EXPECT_EQ(o.result.output_tokens, 40);
  EXPECT_EQ(o.tokens_done_at_outcome, 40u) << "the Outcome came when the sink had finished only "
                                           << o.tokens_done_at_outcome << " of 40 tokens";
  std::vector<int32_t> want;
  for (int i = 0; i < 40; ++i) want.push_back(3 + i);
  EXPECT_EQ(log.ids, want);
  // 40 tokens in 20 ms against 50 ms per call: what arrives during a call goes in the next.
  EXPECT_LE(log.call_sizes.size(), 10u) << log.call_sizes.size() << " calls for 40 tokens";
  for (double t : log.call_done_at) EXPECT_LE(t, o.at);
  const StatsSnapshot st = s.stats();
  EXPECT_EQ(st.requests_finished, 1);
}

TEST(RpcBounds, AStalledSinkEndsItsRequestAtTheSinkTimeoutAndFreesIt) {
  RpcServerOptions opt;
  opt.sink_timeout_s = 0.5;
  Served s(opt, std::chrono::microseconds(5000));  // 500 tokens would take 2.5 s
  RawClient c(s.addr());
  SinkLog log;
  const auto t0 = Clock::now();
  const RawOutcome o = c.generate(tokens_req(2, 500), SinkMode::Stall, 0, log);
  const double took = since(t0);
  ASSERT_FALSE(o.rpc_failed) << o.rpc_error;
  ASSERT_FALSE(o.ok) << "a sink that never returns got a Result";
  EXPECT_EQ(o.kind, ErrorKind::DeadlineExceeded) << o.message;
  EXPECT_NE(o.message.find("serve.sink_timeout_s"), std::string::npos) << o.message;
  EXPECT_GE(took, 0.45);
  EXPECT_LT(took, 2.4) << "the request was not ended before the backend finished it";
  const uint64_t id = s.backend.last_id();
  EXPECT_TRUE(s.backend.wait_until([&] { return s.backend.cancels_of_locked(id) == 1 && s.backend.live_locked() == 0; }))
      << "the backend still holds the request of the stalled sink";
  const StatsSnapshot st = s.stats();
  EXPECT_EQ(st.rejected[static_cast<int>(ErrorKind::DeadlineExceeded)], 1);
  EXPECT_EQ(st.requests_finished + st.requests_cancelled, 0);
}

TEST(RpcBounds, AStalledSinkEndsAtTheRequestsDeadlineWhenThatComesFirst) {
  Served s({}, std::chrono::microseconds(5000));
  RawClient c(s.addr());
  SinkLog log;
  GenerateRequest r = tokens_req(2, 500);
  r.deadline_s = 0.3;
  const auto t0 = Clock::now();
  const RawOutcome o = c.generate(r, SinkMode::Stall, 0, log);
  ASSERT_FALSE(o.ok);
  EXPECT_EQ(o.kind, ErrorKind::DeadlineExceeded) << o.message;
  EXPECT_LT(since(t0), 2.4);
  EXPECT_TRUE(s.backend.wait_until([&] { return s.backend.live_locked() == 0; }));
}

TEST(RpcBounds, AThrowingSinkEndsAsInternalCountedOnce) {
  Served s({}, std::chrono::microseconds(5000));
  RawClient c(s.addr());
  SinkLog log;
  const RawOutcome o = c.generate(tokens_req(2, 200), SinkMode::Throw, 0, log);
  ASSERT_FALSE(o.rpc_failed) << o.rpc_error;
  ASSERT_FALSE(o.ok);
  EXPECT_EQ(o.kind, ErrorKind::Internal);
  EXPECT_NE(o.message.find("TokenSink failed"), std::string::npos) << o.message;
  EXPECT_TRUE(s.backend.wait_until([&] { return s.backend.live_locked() == 0; }));
  const StatsSnapshot st = s.stats();
  EXPECT_EQ(st.rejected[static_cast<int>(ErrorKind::Internal)], 1);
  EXPECT_EQ(st.requests_finished, 0);
  EXPECT_EQ(st.requests_cancelled, 0);
}

TEST(RpcBounds, NullSinkWrongTypesAndUnknownPriorityGetTypedInvalidRequests) {
  Served s;
  RawClient c(s.addr());
  RawOutcome o = c.generate_without_sink(tokens_req(2, 3));
  ASSERT_FALSE(o.rpc_failed) << o.rpc_error;
  EXPECT_EQ(o.kind, ErrorKind::InvalidRequest);
  EXPECT_NE(o.message.find("TokenSink"), std::string::npos) << o.message;
  o = c.generate_with_text_params("this is not a GenerateParams struct");
  ASSERT_FALSE(o.rpc_failed) << "a bare RPC exception: " << o.rpc_error;
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.kind, ErrorKind::InvalidRequest) << o.message;
  EXPECT_NE(o.message.find("malformed generate parameters"), std::string::npos) << o.message;
  {
    auto request = c.cap().generateRequest();
    to_capnp(tokens_req(2, 3), request.initParams());
    request.getParams().setPriority(static_cast<rpc::Priority>(7));
    auto r = request.send().wait(c.ws());
    ASSERT_TRUE(r.getOutcome().isError());
    EXPECT_EQ(r.getOutcome().getError().getKind(), rpc::ErrorKind::INVALID_REQUEST);
  }
  EXPECT_TRUE(c.health_ok());  // the connection still serves
  const StatsSnapshot st = s.stats();
  EXPECT_EQ(st.rejected[static_cast<int>(ErrorKind::InvalidRequest)], 3);
}

TEST(RpcBounds, ANulByteStaysInTheTextPromptAndStopSequences) {
  Served s;
  RawClient c(s.addr());
  GenerateRequest r;
  r.prompt_text = std::string("The\0jury said", 13);
  r.stop = {std::string("a\0b", 3)};
  r.max_tokens = 2;
  SinkLog log;
  const RawOutcome o = c.generate(r, SinkMode::Prompt, 0, log);
  ASSERT_TRUE(o.ok) << o.message;
  EXPECT_EQ(s.backend.last_prompt_text(), r.prompt_text);
  EXPECT_EQ(s.backend.last_stop(), r.stop);
}

TEST(RpcBounds, AMessageOverTheLimitClosesOnlyItsOwnConnection) {
  RpcServerOptions opt;
  opt.limits.max_message_bytes = 64 << 10;
  Served s(opt);
  RawClient other(s.addr());
  ASSERT_TRUE(other.health_ok());
  for (size_t bytes : {size_t{1} << 20, size_t{10} << 20}) {
    RawClient big(s.addr());
    GenerateRequest r;
    r.prompt_text.assign(bytes, 'x');
    SinkLog log;
    const auto t0 = Clock::now();
    const RawOutcome o = big.generate(r, SinkMode::Prompt, 0, log);
    EXPECT_TRUE(o.rpc_failed) << "a " << bytes << "-byte message was let in";
    EXPECT_NE(o.rpc_error.find("too large"), std::string::npos) << "[" << o.rpc_error << "]";
    EXPECT_LT(since(t0), 10.0);
    EXPECT_TRUE(other.health_ok());
  }
  SinkLog log;
  EXPECT_TRUE(other.generate(tokens_req(2, 3), SinkMode::Prompt, 0, log).ok);
}

TEST(RpcBounds, ConnectionsBeyondTheLimitAreClosed) {
  RpcServerOptions opt;
  opt.limits.max_connections = 3;
  Served s(opt);
  std::vector<std::unique_ptr<RawClient>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<RawClient>(s.addr()));
    ASSERT_TRUE(open.back()->health_ok());
  }
  {
    RawClient extra(s.addr());
    EXPECT_THROW(extra.health_ok(), kj::Exception) << "a fourth connection was served";
  }
  open.pop_back();  // one leaves: a new one gets in (once the server has seen it go)
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    try {
      RawClient again(s.addr());
      served = again.health_ok();
    } catch (const kj::Exception&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  EXPECT_TRUE(served);
}

TEST(RpcBounds, IdleConnectionsAreClosedAndBusyOnesKept) {
  RpcServerOptions opt;
  opt.limits.idle_timeout_s = 0.5;
  Served s(opt, std::chrono::milliseconds(150));  // a token every 150 ms
  RawClient idle(s.addr());
  ASSERT_TRUE(idle.health_ok());
  // A call in flight for longer than the idle time keeps its connection open.
  RawClient busy(s.addr());
  SinkLog log;
  const auto t0 = Clock::now();
  const RawOutcome o = busy.generate(tokens_req(2, 8), SinkMode::Prompt, 0, log);
  EXPECT_TRUE(o.ok) << o.message << o.rpc_error;
  EXPECT_EQ(log.ids.size(), 8u);
  EXPECT_GT(since(t0), 1.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_THROW(idle.health_ok(), kj::Exception) << "an idle connection was kept past serve.idle_timeout_s";
}

TEST(RpcBounds, SlowPreparationNeverStallsAnotherConnection) {
  RpcServerOptions opt;
  opt.max_preparing = 1;
  Served s(opt);
  // "sleep" makes submit() take 2 s, as tokenizing a long prompt would.
  std::vector<std::future<RpcClient::GenerateOutcome>> slow;
  for (int i = 0; i < 3; ++i)
    slow.push_back(std::async(std::launch::async, [&] {
      GenerateRequest r;
      r.prompt_text = "sleep";
      r.max_tokens = 2;
      return RpcClient(s.addr()).generate(r, [](const std::vector<TokenPiece>&) { return true; });
    }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  RawClient c(s.addr());
  double worst = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    EXPECT_TRUE(c.health_ok());
    worst = std::max(worst, since(t0));
  }
  EXPECT_LT(worst, 1.0) << "health waited " << worst << " s behind a slow submit()";
  int overloaded = 0, ok = 0;
  for (auto& f : slow) {
    const auto o = f.get();
    ok += o.ok;
    overloaded += !o.ok && o.error_kind == ErrorKind::Overloaded;
  }
  EXPECT_GE(overloaded, 1) << "serve.max_preparing = 1 let three requests wait";
  EXPECT_EQ(ok + overloaded, 3);
}

}  // namespace
}  // namespace tandem::serve
