// The data-parallel router against three model-free replicas (tests/serve/fake_backend.h),
// each behind its own RpcServer, all over real TCP sockets on 127.0.0.1: round-robin spread
// with the serving replica named in the result, tokens streamed through the router in order,
// a full replica skipped for the next one (overloaded only when every replica refuses),
// a client cancel that reaches the right replica, typed errors passed through, merged stats
// with the per-replica list, health and modelInfo; plus merge_replica_stats on its own.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <string>
#include <vector>

#include "serve/rpc_client.h"
#include "serve/rpc_router.h"
#include "serve/rpc_server.h"
#include "serve/stats_merge.h"
#include "tests/serve/fake_backend.h"

namespace tandem::serve {
namespace {

using testing::FakeBackend;

// A fake replica emitting a token every 2 ms per request: an engine's pace (one token per
// step), not the fake's default 0.5 ms. The router proxies every token call on one thread, and
// replies come back on the same replica connection behind the tokens, so a flood it cannot
// keep up with (0.5 ms under ASan with exact malloc stacks) delays even an `overloaded`
// answer by tens of seconds (see docs/serving.md, "Data-parallel replicas").
struct Replica {
  FakeBackend backend;
  RpcServer server;
  explicit Replica(int max_live, RpcServerOptions o = {})
      : backend(max_live, std::chrono::microseconds(2000)), server(backend, std::move(o)) {
    server.start();
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(server.port()); }
};

struct Routed {
  std::vector<std::unique_ptr<Replica>> replicas;
  std::unique_ptr<RpcRouter> router;
  explicit Routed(std::vector<int> max_live, ConnectionLimits limits = {}) {
    RpcRouterOptions o;
    o.limits = limits;
    RpcServerOptions ro;
    ro.limits = limits;
    for (int m : max_live) {
      replicas.push_back(std::make_unique<Replica>(m, ro));
      o.replicas.push_back(replicas.back()->addr());
    }
    router = std::make_unique<RpcRouter>(o);
    router->start();
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(router->port()); }
  FakeBackend& backend(size_t i) { return replicas[i]->backend; }
};

GenerateRequest tokens_req(int prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt_tokens.assign(static_cast<size_t>(prompt), 5);
  r.max_tokens = max_tokens;
  return r;
}

const auto kAll = [](const std::vector<TokenPiece>&) { return true; };

TEST(RpcRouter, RoundRobinStreamsThroughAndNamesTheReplica) {
  Routed r({100, 100, 100});
  RpcClient c(r.addr());
  std::vector<int32_t> served;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> ids;
    auto o = c.generate(tokens_req(2 + i, 4), [&](const std::vector<TokenPiece>& ps) {
      for (const auto& p : ps) ids.push_back(p.id);
      return true;
    });
    ASSERT_TRUE(o.ok) << o.error_message;
    const int base = 2 + i;  // the fake emits prompt_len + k
    EXPECT_EQ(ids, (std::vector<int32_t>{base, base + 1, base + 2, base + 3})) << "request " << i;
    EXPECT_EQ(o.result.output_tokens, 4);
    served.push_back(o.result.replica);
  }
  EXPECT_EQ(served, (std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(r.backend(i).wait_until([&] { return r.backend(i).submitted_locked() == 2; }))
        << "replica " << i << " should have served 2 of the 6";
}

TEST(RpcRouter, ItsConnectionsToTheReplicasOutliveTheirIdleTimeout) {
  ConnectionLimits limits;
  limits.idle_timeout_s = 0.3;  // the replicas' servers close idle connections after 0.3 s
  Routed r({100, 100}, limits);
  RpcClient c(r.addr());
  ASSERT_TRUE(c.generate(tokens_req(2, 3), kAll).ok);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  for (int i = 0; i < 2; ++i) {  // both replicas, after four idle periods
    RpcClient fresh(r.addr());
    auto o = fresh.generate(tokens_req(2, 3), kAll);
    EXPECT_TRUE(o.ok) << "request " << i << " after the router idled: " << o.error_message;
  }
}

// Long requests on their own threads that end (cancelled by their client) once released;
// the destructor releases and joins, so a failed assertion never leaves a thread running.
struct Holders {
  std::string addr;
  std::atomic<bool> release{false};
  std::atomic<int> cut{0};
  std::vector<std::thread> threads;
  void hold() {
    threads.emplace_back([this] {
      RpcClient hc(addr);
      auto o = hc.generate(tokens_req(1, 1000000), [&](const std::vector<TokenPiece>&) { return !release.load(); });
      if (o.cancelled) ++cut;
    });
  }
  void release_all() {
    release = true;
    for (auto& t : threads) t.join();
    threads.clear();
    release = false;
  }
  ~Holders() { release_all(); }
};

TEST(RpcRouter, AFullReplicaIsSkippedAndOverloadedOnlyWhenAllAreFull) {
  Routed r({1, 1});  // each replica takes one live request
  RpcClient c(r.addr());
  Holders h{r.addr()};
  h.hold();  // turn 0 -> replica 0
  ASSERT_TRUE(r.backend(0).wait_until([&] { return r.backend(0).live_locked() == 1; }));
  h.hold();  // turn 1 -> replica 1
  ASSERT_TRUE(r.backend(1).wait_until([&] { return r.backend(1).live_locked() == 1; }));
  auto o = c.generate(tokens_req(1, 2), kAll);  // turn 2: both refuse
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.error_kind, ErrorKind::Overloaded) << o.error_message;
  EXPECT_GT(o.retry_after_s, 0.0);
  h.release_all();
  EXPECT_EQ(h.cut, 2);
  ASSERT_TRUE(r.backend(0).wait_until([&] { return r.backend(0).live_locked() == 0; }));
  ASSERT_TRUE(r.backend(1).wait_until([&] { return r.backend(1).live_locked() == 0; }));
  h.hold();  // one replica is full again
  int held_on = -1;  // the replica it went to (round-robin: replica 1; either proves the skip)
  for (int t = 0; t < 10000 && held_on < 0; ++t) {
    if (r.backend(0).live() == 1) held_on = 0;
    else if (r.backend(1).live() == 1) held_on = 1;
    else std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(held_on, 0) << "the held request is live on neither replica";
  if (held_on != 1) std::printf("note: the held request went to replica %d, not its turn's replica 1\n", held_on);
  const int free_one = 1 - held_on;
  for (int i = 0; i < 2; ++i) {  // whichever replica's turn it is, the free one serves
    auto ok = c.generate(tokens_req(1, 2), kAll);
    ASSERT_TRUE(ok.ok) << ok.error_message;
    EXPECT_EQ(ok.result.replica, free_one) << "request " << i;
  }
}

TEST(RpcRouter, CancelReachesTheServingReplicaAndErrorsPassThrough) {
  Routed r({100, 100});
  {
    RpcClient c(r.addr());
    EXPECT_TRUE(c.generate(tokens_req(1, 1), kAll).ok);  // replica 0; the next goes to 1
    int seen = 0;
    auto o = c.generate(tokens_req(2, 5000), [&](const std::vector<TokenPiece>& ps) {
      seen += static_cast<int>(ps.size());
      return seen < 3;
    });
    EXPECT_TRUE(o.cancelled);
    const uint64_t id = r.backend(1).last_id();
    EXPECT_TRUE(r.backend(1).wait_until([&] { return r.backend(1).cancels_of_locked(id) == 1; }))
        << "replica 1 never saw cancel(" << id << ")";
    EXPECT_TRUE(r.backend(1).wait_until([&] { return r.backend(1).live_locked() == 0; }));
    GenerateRequest empty;
    auto e = c.generate(empty, kAll);
    EXPECT_EQ(e.error_kind, ErrorKind::InvalidRequest);
    GenerateRequest late;
    late.prompt_text = "deadline";
    EXPECT_EQ(c.generate(late, kAll).error_kind, ErrorKind::DeadlineExceeded);
    EXPECT_TRUE(c.generate(tokens_req(3, 2), kAll).ok);
  }
  EXPECT_EQ(r.backend(0).cancels().size(), 0u);
}

TEST(RpcRouter, StatsHealthAndModelInfoCoverEveryReplica) {
  Routed r({100, 100});
  RpcClient c(r.addr());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.generate(tokens_req(2, 3), kAll).ok);
  ASSERT_TRUE(r.backend(0).wait_until([&] { return r.backend(0).submitted_locked() == 2; }));
  const StatsSnapshot s = c.stats();
  ASSERT_EQ(s.replicas.size(), 2u);
  EXPECT_EQ(s.replicas[0].requests_finished, 2);
  EXPECT_EQ(s.replicas[1].requests_finished, 1);
  EXPECT_EQ(s.requests_finished, 3);
  EXPECT_EQ(s.kv_blocks_total, 128);  // 64 per fake replica
  EXPECT_EQ(s.queue_depth[1], 10);
  EXPECT_EQ(s.ttft[0].count, 22);
  const HealthInfo h = c.health();
  EXPECT_TRUE(h.live);
  EXPECT_TRUE(h.ready);
  EXPECT_NE(h.detail.find("replica 1"), std::string::npos) << h.detail;
  const ModelInfo m = c.model_info();
  EXPECT_EQ(m.dp, 2);
  EXPECT_EQ(m.name, "fake-gpt");
}

TEST(RpcRouter, AReplicaThatIsNotListeningIsAClearStartError) {
  Replica a(10);
  RpcRouterOptions o;
  o.replicas = {a.addr(), "127.0.0.1:1"};
  RpcRouter router(o);
  try {
    router.start();
    FAIL() << "the router started without replica 1";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("replica 1 at 127.0.0.1:1"), std::string::npos) << e.what();
  }
}

TEST(StatsMerge, SumsCountsAndKeepsTheWorstPercentile) {
  StatsSnapshot a, b, idle;
  a.queue_depth[0] = 1;
  a.kv_blocks_used = 4;
  a.kv_blocks_total = 10;
  a.ttft[0] = {0.1, 0.2, 0.3, 5};
  a.weights_version = 7;
  a.rejected[1] = 2;
  b.queue_depth[0] = 2;
  b.kv_blocks_used = 1;
  b.kv_blocks_total = 10;
  b.ttft[0] = {0.05, 0.4, 0.35, 3};
  b.weights_version = 6;
  b.tokens_per_s = 12.5;
  idle.ttft[0] = {9, 9, 9, 0};  // no samples: its percentiles do not count
  idle.weights_version = 7;
  const StatsSnapshot m = merge_replica_stats({a, b, idle});
  EXPECT_EQ(m.queue_depth[0], 3);
  EXPECT_EQ(m.kv_blocks_used, 5);
  EXPECT_EQ(m.kv_blocks_total, 20);
  EXPECT_DOUBLE_EQ(m.ttft[0].p50, 0.1);
  EXPECT_DOUBLE_EQ(m.ttft[0].p90, 0.4);
  EXPECT_DOUBLE_EQ(m.ttft[0].p99, 0.35);
  EXPECT_EQ(m.ttft[0].count, 8);
  EXPECT_EQ(m.weights_version, 6);
  EXPECT_EQ(m.rejected[1], 2);
  EXPECT_DOUBLE_EQ(m.tokens_per_s, 12.5);
  ASSERT_EQ(m.replicas.size(), 3u);
  EXPECT_EQ(m.replicas[1].kv_blocks_used, 1);
}

TEST(StatsMerge, StalenessIsTheWorstReplicasOwnAndWithinTheMergedDifference) {
  // Two replicas whose snapshots straddle a weight sync: each is one version behind its own
  // training_version, but the oldest weights and the newest training step are two apart.
  StatsSnapshot a, b;
  a.training_version = 10;
  a.weights_version = 9;
  a.staleness = 1;
  b.training_version = 11;
  b.weights_version = 10;
  b.staleness = 1;
  const StatsSnapshot m = merge_replica_stats({a, b});
  EXPECT_EQ(m.training_version, 11);
  EXPECT_EQ(m.weights_version, 9);
  EXPECT_EQ(m.staleness, 1);
  EXPECT_LE(m.staleness, m.training_version - m.weights_version);
  b.weights_version = 8;
  b.staleness = 3;
  EXPECT_EQ(merge_replica_stats({a, b}).staleness, 3);
}

}  // namespace
}  // namespace tandem::serve
