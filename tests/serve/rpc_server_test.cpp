// The RPC front end against a model-free backend (tests/serve/fake_backend.h) over a real TCP
// socket on 127.0.0.1: streaming order and the result, typed errors then a good request, a
// client-side cancel that reaches the backend without any further client call, many
// concurrent requests with random cancels, and a clear error (not a crash) on a busy address.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "serve/rpc_client.h"
#include "serve/rpc_server.h"
#include "tests/serve/fake_backend.h"

namespace tandem::serve {
namespace {

using testing::FakeBackend;

struct Served {
  FakeBackend backend;
  RpcServer server{backend, RpcServerOptions{}};
  Served() { server.start(); }
  std::string addr() const { return "127.0.0.1:" + std::to_string(server.port()); }
};

GenerateRequest tokens_req(int prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt_tokens.assign(static_cast<size_t>(prompt), 5);
  r.max_tokens = max_tokens;
  return r;
}

TEST(RpcServer, StreamsTokensInOrderThenTheResult) {
  Served s;
  RpcClient c(s.addr());
  std::vector<int32_t> ids;
  auto o = c.generate(tokens_req(3, 6), [&](const std::vector<TokenPiece>& ps) {
    for (const auto& p : ps) ids.push_back(p.id);
    return true;
  });
  ASSERT_TRUE(o.ok) << o.error_message;
  EXPECT_EQ(ids, (std::vector<int32_t>{3, 4, 5, 6, 7, 8}));  // the fake emits prompt_len + i
  EXPECT_EQ(o.result.output_tokens, 6);
  EXPECT_EQ(o.result.prompt_tokens, 3);
}

TEST(RpcServer, TypedErrorsKeepTheConnectionServing) {
  Served s;
  RpcClient c(s.addr());
  auto none = [](const std::vector<TokenPiece>&) { return true; };
  GenerateRequest empty;
  auto o = c.generate(empty, none);
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.error_kind, ErrorKind::InvalidRequest);
  GenerateRequest down;
  down.prompt_text = "shutdown";
  EXPECT_EQ(c.generate(down, none).error_kind, ErrorKind::ShuttingDown);
  GenerateRequest late;
  late.prompt_text = "deadline";
  EXPECT_EQ(c.generate(late, none).error_kind, ErrorKind::DeadlineExceeded);
  GenerateRequest bug;
  bug.prompt_text = "throw";  // a plain exception from submit() becomes `internal`
  EXPECT_EQ(c.generate(bug, none).error_kind, ErrorKind::Internal);
  EXPECT_TRUE(c.generate(tokens_req(2, 3), none).ok);
}

TEST(RpcServer, ClientCancelReachesTheBackendWithoutAnotherCall) {
  Served s;
  {
    RpcClient c(s.addr());
    int seen = 0;
    auto o = c.generate(tokens_req(2, 500), [&](const std::vector<TokenPiece>& ps) {
      seen += static_cast<int>(ps.size());
      return seen < 2;
    });
    EXPECT_TRUE(o.cancelled);
    const uint64_t id = s.backend.last_id();
    // No further call on this client: the drop must already be on the wire.
    EXPECT_TRUE(s.backend.wait_until([&] { return s.backend.cancels_of_locked(id) == 1; }, 10.0))
        << "the backend never saw cancel(" << id << ")";
  }
  EXPECT_TRUE(s.backend.wait_until([&] { return s.backend.live_locked() == 0; }, 10.0));
}

TEST(RpcServer, ManyConcurrentRequestsWithRandomCancels) {
  Served s;
  std::atomic<int> ok{0}, cut{0}, bad{0};
  std::vector<std::thread> th;
  for (int t = 0; t < 4; ++t)
    th.emplace_back([&, t] {
      RpcClient c(s.addr());
      std::mt19937 rng(static_cast<uint32_t>(t));
      for (int i = 0; i < 25; ++i) {
        const int stop_at = rng() % 3 == 0 ? 1 + static_cast<int>(rng() % 4) : -1;
        int seen = 0;
        auto o = c.generate(tokens_req(1 + static_cast<int>(rng() % 8), 1 + static_cast<int>(rng() % 12)),
                            [&](const std::vector<TokenPiece>& ps) {
                              seen += static_cast<int>(ps.size());
                              return stop_at < 0 || seen < stop_at;
                            });
        (o.cancelled ? cut : o.ok ? ok : bad)++;
      }
    });
  for (auto& t : th) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(ok + cut, 100);
  EXPECT_TRUE(s.backend.wait_until([&] { return s.backend.live_locked() == 0; }, 10.0));
  for (const auto& [id, n] : s.backend.cancels()) EXPECT_LE(n, 1) << "request " << id << " cancelled twice";
}

TEST(RpcServer, BusyAddressIsAClearErrorNotACrash) {
  Served a;
  FakeBackend b;
  RpcServerOptions o;
  o.listen = a.addr();
  RpcServer second(b, o);
  try {
    second.start();
    FAIL() << "a second server started on " << a.addr();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(a.addr()), std::string::npos) << e.what();
    // KJ's own reason comes through (not "unknown exception").
    EXPECT_EQ(std::string(e.what()).find("unknown exception"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::serve
