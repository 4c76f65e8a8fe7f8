// The RPC front end (RpcServer, RpcClient, /metrics, bench-serve) against FakeBackend over a
// real TCP socket on 127.0.0.1: streaming order, typed errors, cancellation (client, dropped
// connection, failed sink, server stop), concurrency, stats round trips and the load
// generator. Every wait is bounded: client calls carry a timeout, backend polls too.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "serve/bench_serve.h"
#include "serve/metrics_text.h"
#include "serve/rpc_client.h"
#include "serve/rpc_server.h"
#include "tests/serve/fake_backend.h"

namespace tandem::serve {
namespace {

using testing::FakeBackend;
using Outcome = RpcClient::GenerateOutcome;

constexpr double kCallTimeoutS = 10.0;

struct Harness {
  explicit Harness(int max_live = 1000, std::string metrics = "")
      : backend(max_live), server(backend, RpcServerOptions{"127.0.0.1:0", std::move(metrics)}) {
    server.start();
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(server.port()); }
  FakeBackend backend;
  RpcServer server;
};

GenerateRequest tokens_req(int prompt_len, int max_tokens, Priority p = Priority::Batch) {
  GenerateRequest r;
  for (int i = 0; i < prompt_len; ++i) r.prompt_tokens.push_back(i % 50);
  r.max_tokens = max_tokens;
  r.priority = p;
  return r;
}

GenerateRequest text_req(const std::string& text, int max_tokens = 2) {
  GenerateRequest r;
  r.prompt_text = text;
  r.max_tokens = max_tokens;
  return r;
}

auto accept_all = [](const std::vector<TokenPiece>&) { return true; };

TEST(RpcServer, StreamsTokensInOrderBeforeTheResult) {
  Harness h;
  RpcClient c(h.addr(), kCallTimeoutS);
  std::vector<int32_t> ids;
  std::string text;
  const Outcome o = c.generate(tokens_req(3, 20), [&](const std::vector<TokenPiece>& ps) {
    for (const auto& p : ps) {
      ids.push_back(p.id);
      text += p.text;
    }
    return true;
  });
  ASSERT_TRUE(o.ok) << error_kind_name(o.error_kind) << ": " << o.error_message;
  EXPECT_FALSE(o.cancelled);
  ASSERT_EQ(ids.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(ids[i], 3 + i) << "token " << i;
  EXPECT_EQ(text.substr(0, 4), "3 4 ");
  EXPECT_EQ(o.tokens_received, 20);
  EXPECT_EQ(o.result.finish, FinishReason::Length);
  EXPECT_EQ(o.result.prompt_tokens, 3);
  EXPECT_EQ(o.result.output_tokens, 20);
  EXPECT_EQ(o.result.weights_version, 42);
  EXPECT_GT(o.result.total_s, 0.0);
  EXPECT_LE(o.result.ttft_s, o.result.total_s);

  // A text prompt (the fake counts its bytes as tokens) on the same connection.
  ids.clear();
  const Outcome t = c.generate(text_req("hello", 3), [&](const std::vector<TokenPiece>& ps) {
    for (const auto& p : ps) ids.push_back(p.id);
    return true;
  });
  ASSERT_TRUE(t.ok);
  EXPECT_EQ(ids, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(t.result.prompt_tokens, 5);
  // Requests that finished are never cancelled.
  EXPECT_TRUE(h.backend.wait_until([&] { return h.backend.live_locked() == 0; }));
  EXPECT_TRUE(h.backend.cancels().empty());
}

TEST(RpcServer, EachTypedErrorComesBackAsItsKindAndTheConnectionStaysUsable) {
  Harness h;
  RpcClient c(h.addr(), kCallTimeoutS);
  struct Case {
    GenerateRequest req;
    ErrorKind kind;
  };
  GenerateRequest zero = tokens_req(2, 0);
  std::vector<Case> cases = {
      {text_req(""), ErrorKind::InvalidRequest},            // refused in submit()
      {zero, ErrorKind::InvalidRequest},                    // refused in submit()
      {text_req("shutdown"), ErrorKind::ShuttingDown},      // refused in submit()
      {text_req("throw"), ErrorKind::Internal},             // submit() threw a non-ServeError
      {text_req("deadline"), ErrorKind::DeadlineExceeded},  // failed later on the engine thread
      {text_req("internal"), ErrorKind::Internal},          // failed later on the engine thread
  };
  for (const Case& k : cases) {
    const Outcome o = c.generate(k.req, accept_all);
    EXPECT_FALSE(o.ok) << "prompt '" << k.req.prompt_text << "'";
    EXPECT_EQ(o.error_kind, k.kind) << "prompt '" << k.req.prompt_text << "': " << error_kind_name(o.error_kind)
                                    << ": " << o.error_message;
    EXPECT_FALSE(o.error_message.empty());
    const Outcome good = c.generate(tokens_req(4, 2), accept_all);
    EXPECT_TRUE(good.ok) << "after '" << k.req.prompt_text << "': " << good.error_message;
    EXPECT_EQ(good.result.output_tokens, 2);
  }
}

TEST(RpcServer, OverloadedCarriesRetryAfterAndLaterRequestsSucceed) {
  Harness h(/*max_live=*/2);
  RpcClient c(h.addr(), kCallTimeoutS);
  std::vector<Outcome> bg(2);
  int done = 0;
  // Two long requests fill the fake's capacity (calls on one connection arrive in order).
  for (int i = 0; i < 2; ++i)
    c.start(tokens_req(2, 400), accept_all, [&, i](const Outcome& o) {
      bg[i] = o;
      ++done;
    });
  const Outcome over = c.generate(tokens_req(2, 5), accept_all);
  EXPECT_FALSE(over.ok);
  EXPECT_EQ(over.error_kind, ErrorKind::Overloaded) << over.error_message;
  EXPECT_DOUBLE_EQ(over.retry_after_s, 0.25);
  ASSERT_TRUE(c.run_until_idle(kCallTimeoutS));
  EXPECT_EQ(done, 2);
  EXPECT_TRUE(bg[0].ok && bg[1].ok);
  const Outcome again = c.generate(tokens_req(2, 5), accept_all);
  EXPECT_TRUE(again.ok) << again.error_message;
  EXPECT_EQ(c.stats().rejected[static_cast<int>(ErrorKind::Overloaded)], 1);
}

TEST(RpcServer, ClientCancelMidStreamCancelsOnceInTheBackend) {
  Harness h;
  RpcClient c(h.addr(), kCallTimeoutS);
  int seen = 0;
  const Outcome o = c.generate(tokens_req(2, 100000), [&](const std::vector<TokenPiece>& ps) {
    seen += static_cast<int>(ps.size());
    return seen < 5;
  });
  EXPECT_TRUE(o.cancelled);
  EXPECT_FALSE(o.ok);
  EXPECT_GE(o.tokens_received, 5);
  const uint64_t id = h.backend.last_id();
  ASSERT_TRUE(h.backend.wait_until([&] { return h.backend.cancels_of_locked(id) >= 1; }))
      << "the backend never saw cancel(" << id << ")";
  EXPECT_TRUE(h.backend.wait_until([&] { return h.backend.live_locked() == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(h.backend.cancels()[id], 1);
  EXPECT_EQ(seen, o.tokens_received) << "no tokens after the cancel reach the callback";
  const Outcome next = c.generate(tokens_req(2, 3), accept_all);
  EXPECT_TRUE(next.ok) << next.error_message;
}

TEST(RpcServer, DroppedConnectionCancelsTheRequest) {
  Harness h;
  {
    RpcClient c(h.addr(), kCallTimeoutS);
    int seen = 0;
    c.start(tokens_req(2, 100000), [&](const std::vector<TokenPiece>& ps) {
      seen += static_cast<int>(ps.size());
      return true;
    }, [](const Outcome&) {});
    for (int i = 0; i < 2000 && seen < 3; ++i) c.wait_ms(2);
    ASSERT_GE(seen, 3) << "no tokens streamed within 4 s";
  }  // the client and its connection go away mid-stream
  const uint64_t id = h.backend.last_id();
  ASSERT_TRUE(h.backend.wait_until([&] { return h.backend.cancels_of_locked(id) == 1 && h.backend.live_locked() == 0; }))
      << "cancel(" << id << ") was not seen after the client disconnected";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(h.backend.cancels()[id], 1);
}

TEST(RpcServer, FailingTokenSinkCancelsTheRequest) {
  Harness h;
  RpcClient c(h.addr(), kCallTimeoutS);
  int seen = 0;
  const Outcome o = c.generate(tokens_req(2, 100000), [&](const std::vector<TokenPiece>& ps) -> bool {
    seen += static_cast<int>(ps.size());
    if (seen >= 3) throw std::runtime_error("sink broke");
    return true;
  });
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.error_kind, ErrorKind::Internal);
  EXPECT_NE(o.error_message.find("token sink failed"), std::string::npos) << o.error_message;
  const uint64_t id = h.backend.last_id();
  ASSERT_TRUE(h.backend.wait_until([&] { return h.backend.cancels_of_locked(id) == 1 && h.backend.live_locked() == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(h.backend.cancels()[id], 1);
  EXPECT_TRUE(c.generate(tokens_req(2, 2), accept_all).ok);
}

// 4 client threads x 50 concurrent requests each; a third are endless and cancelled by the
// client after 1..5 tokens, so each of those must reach the backend as one cancel.
TEST(RpcServer, ManyConcurrentRequestsWithRandomCancelsAllComplete) {
  Harness h;
  constexpr int kThreads = 4, kPerThread = 50;
  std::atomic<int> finished{0}, cancelled{0}, bad{0}, cut_requests{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(17 + t);
      RpcClient c(h.addr(), kCallTimeoutS);
      for (int i = 0; i < kPerThread; ++i) {
        const int plen = 1 + static_cast<int>(rng() % 20);
        const int cut = rng() % 3 == 0 ? 1 + static_cast<int>(rng() % 5) : 0;
        const int max_tokens = cut ? 1000000 : 1 + static_cast<int>(rng() % 30);
        cut_requests += cut > 0;
        auto next = std::make_shared<int32_t>(plen);
        auto in_order = std::make_shared<bool>(true);
        c.start(
            tokens_req(plen, max_tokens, i % 4 == 0 ? Priority::Realtime : Priority::Batch),
            [next, in_order, cut, plen](const std::vector<TokenPiece>& ps) {
              for (const auto& p : ps) *in_order = *in_order && p.id == (*next)++;
              return cut == 0 || *next - plen < cut;
            },
            [&, next, in_order, max_tokens, plen, cut](const Outcome& o) {
              if (!*in_order) ++bad;
              if (o.cancelled && cut > 0 && o.tokens_received >= cut) {
                ++cancelled;
              } else if (o.ok && o.result.output_tokens == max_tokens && *next - plen == max_tokens) {
                ++finished;
              } else {
                ++bad;
                ADD_FAILURE() << "ok " << o.ok << " " << o.error_message << ": " << (*next - plen) << " of "
                              << max_tokens << " tokens";
              }
            });
      }
      if (!c.run_until_idle(20.0)) {
        ADD_FAILURE() << c.in_flight() << " requests still in flight after 20 s";
        bad += c.in_flight();
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(finished + cancelled, kThreads * kPerThread);
  EXPECT_EQ(cancelled.load(), cut_requests.load());
  EXPECT_GT(cancelled.load(), 0);
  ASSERT_TRUE(h.backend.wait_until([&] { return h.backend.live_locked() == 0; }))
      << h.backend.live() << " requests still live in the backend";
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // room for a wrong second cancel
  const auto cancels = h.backend.cancels();
  EXPECT_EQ(static_cast<int>(cancels.size()), cut_requests.load());
  for (const auto& [id, n] : cancels) EXPECT_EQ(n, 1) << "request " << id << " cancelled " << n << " times";
}

TEST(RpcClient, GenerateManyRunsConcurrentlyAndCancelsAfterN) {
  Harness h;
  RpcClient c(h.addr(), kCallTimeoutS);
  std::vector<GenerateRequest> reqs;
  std::vector<int> cut;
  for (int i = 0; i < 20; ++i) {
    reqs.push_back(tokens_req(1 + i, i % 2 ? 1000 : 4));
    cut.push_back(i % 2 ? 3 : 0);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto out = c.generate_many(reqs, cut);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(out.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    if (i % 2) {
      EXPECT_TRUE(out[i].cancelled) << i;
      EXPECT_GE(out[i].tokens_received, 3) << i;
    } else {
      EXPECT_TRUE(out[i].ok) << i << ": " << out[i].error_message;
      EXPECT_EQ(out[i].result.prompt_tokens, 1 + i);
      EXPECT_EQ(out[i].tokens_received, 4);
    }
  }
  EXPECT_LT(s, 5.0);
  EXPECT_TRUE(h.backend.wait_until([&] { return h.backend.live_locked() == 0 && h.backend.cancelled_locked() == 10; }));
}

TEST(RpcClient, TwoClientsShareOneThread) {
  Harness h;
  RpcClient a(h.addr(), kCallTimeoutS), b(h.addr(), kCallTimeoutS);
  bool a_done = false;
  a.start(tokens_req(2, 10), accept_all, [&](const Outcome& o) { a_done = o.ok; });
  EXPECT_TRUE(b.generate(tokens_req(3, 30), accept_all).ok);  // runs a's call too
  EXPECT_TRUE(a.run_until_idle(kCallTimeoutS));
  EXPECT_TRUE(a_done);
}

TEST(RpcServer, HealthStatsAndModelInfoRoundTrip) {
  Harness h;
  RpcClient c(h.addr(), kCallTimeoutS);
  const HealthInfo hi = c.health();
  EXPECT_TRUE(hi.live);
  EXPECT_TRUE(hi.ready);
  EXPECT_EQ(hi.detail, "fake backend");
  ASSERT_FALSE(c.generate(text_req(""), accept_all).ok);  // one rejection to count
  const StatsSnapshot s = c.stats();
  EXPECT_EQ(s.queue_depth[0], 3);
  EXPECT_EQ(s.queue_depth[1], 5);
  EXPECT_EQ(s.kv_blocks_used, 7);
  EXPECT_EQ(s.kv_blocks_free, 57);
  EXPECT_EQ(s.kv_blocks_total, 64);
  EXPECT_DOUBLE_EQ(s.ttft[0].p90, 0.02);
  EXPECT_EQ(s.ttft[0].count, 11);
  EXPECT_DOUBLE_EQ(s.tpot[1].p99, 0.004);
  EXPECT_EQ(s.tpot[1].count, 12);
  EXPECT_DOUBLE_EQ(s.tokens_per_s, 123.5);
  EXPECT_EQ(s.weights_version, 42);
  EXPECT_EQ(s.rejected[static_cast<int>(ErrorKind::InvalidRequest)], 1);
  EXPECT_EQ(s.prompt_tokens_total, 1000);
  EXPECT_EQ(s.output_tokens_total, 2000);
  const ModelInfo m = c.model_info();
  EXPECT_EQ(m.name, "fake-gpt");
  EXPECT_EQ(m.layers, 2);
  EXPECT_EQ(m.dim, 64);
  EXPECT_EQ(m.heads, 4);
  EXPECT_EQ(m.vocab, 500);
  EXPECT_EQ(m.seq_len, 256);
  EXPECT_EQ(m.tp, 2);
  EXPECT_EQ(m.layout, "dp1 tp2 pp1");
  EXPECT_EQ(m.kv_block_tokens, 16);
  EXPECT_EQ(m.kv_blocks, 64);
  EXPECT_EQ(m.weights_version, 42);
}

// A plain-socket HTTP GET; returns the whole response (headers and body) or "" on a timeout.
std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      char buf[4096];
      for (;;) {
        // Done once the headers and Content-Length bytes of body arrived (or the peer closed).
        const size_t hdr = out.find("\r\n\r\n");
        if (hdr != std::string::npos) {
          const size_t cl = out.find("Content-Length: ");
          if (cl != std::string::npos && cl < hdr &&
              out.size() >= hdr + 4 + std::stoul(out.substr(cl + 16)))
            break;
        }
        pollfd p{fd, POLLIN, 0};
        const int left = static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count());
        if (left <= 0 || ::poll(&p, 1, left) <= 0) break;
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  return out;
}

TEST(RpcServer, MetricsEndpointServesPrometheusText) {
  Harness h(1000, "127.0.0.1:0");
  ASSERT_GT(h.server.metrics_port(), 0);
  ASSERT_NE(h.server.metrics_port(), h.server.port());
  const std::string r = http_get(h.server.metrics_port(), "/metrics");
  ASSERT_EQ(r.substr(0, 12), "HTTP/1.1 200") << r;
  EXPECT_NE(r.find("text/plain; version=0.0.4"), std::string::npos);
  for (const char* line : {"tandem_queue_depth{class=\"realtime\"} 3\n", "tandem_queue_depth{class=\"batch\"} 5\n",
                           "tandem_kv_blocks_total 64\n", "tandem_kv_blocks_used 7\n",
                           "tandem_ttft_seconds{class=\"realtime\",quantile=\"0.9\"} 0.02\n",
                           "tandem_tokens_per_second 123.5\n", "tandem_weights_version 42\n",
                           "# TYPE tandem_requests_finished_total counter\n",
                           "tandem_requests_rejected_total{kind=\"overloaded\"} 0\n",
                           "tandem_output_tokens_total 2000\n", "name=\"fake-gpt\""})
    EXPECT_NE(r.find(line), std::string::npos) << "missing: " << line << "\nin:\n" << r;
  const std::string nf = http_get(h.server.metrics_port(), "/other");
  EXPECT_EQ(nf.substr(0, 12), "HTTP/1.1 404") << nf;
  // The RPC side is unaffected.
  RpcClient c(h.addr(), kCallTimeoutS);
  EXPECT_TRUE(c.health().live);
}

TEST(MetricsText, EveryFamilyHasHelpAndTypeAndEverySampleParses) {
  StatsSnapshot s;
  s.requests_finished = 123456789012345LL;  // prints as an integer, not 1.2e+14
  ModelInfo m;
  m.name = "we\"ird\\name";
  const std::string text = prometheus_text(s, m);
  EXPECT_NE(text.find("tandem_requests_finished_total 123456789012345\n"), std::string::npos);
  EXPECT_NE(text.find("name=\"we\\\"ird\\\\name\""), std::string::npos) << text;
  std::istringstream in(text);
  std::string line, typed;
  std::set<std::string> helped;
  int samples = 0;
  while (std::getline(in, line)) {
    ASSERT_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      typed = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.count(typed)) << "TYPE before HELP: " << line;
      continue;
    }
    ++samples;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    EXPECT_EQ(name.rfind("tandem_", 0), 0u) << line;
    EXPECT_EQ(name.rfind(typed, 0), 0u) << "sample outside its family " << typed << ": " << line;
    const std::string value = line.substr(line.rfind(' ') + 1);
    size_t used = 0;
    EXPECT_NO_THROW((void)std::stod(value, &used)) << line;
    EXPECT_EQ(used, value.size()) << line;
  }
  EXPECT_GT(samples, 30);
}

TEST(RpcServer, StartFailsNamingTheAddressAndStopIsIdempotent) {
  FakeBackend backend;
  RpcServer a(backend, RpcServerOptions{});
  a.start();
  RpcServer taken(backend, RpcServerOptions{"127.0.0.1:" + std::to_string(a.port()), ""});
  try {
    taken.start();
    ADD_FAILURE() << "a second server on port " << a.port() << " started";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(a.port())), std::string::npos) << e.what();
  }
  RpcServer bad_metrics(backend, RpcServerOptions{"127.0.0.1:0", "not an address:x"});
  EXPECT_THROW(bad_metrics.start(), std::exception);
  const int port = a.port();
  a.stop();
  a.stop();
  RpcServer never_started(backend, RpcServerOptions{});
  never_started.stop();
  try {
    RpcClient c("127.0.0.1:" + std::to_string(port), 5.0);
    ADD_FAILURE() << "connected to a stopped server on port " << port;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(port)), std::string::npos) << e.what();
  }
}

// Keeps every stream, so the test can fire engine events after the server stopped.
class HoldingBackend final : public ServingBackend {
 public:
  uint64_t submit(GenerateRequest, std::shared_ptr<GenerateStream> s) override {
    std::lock_guard<std::mutex> lock(mu);
    streams.push_back(std::move(s));
    return streams.size();
  }
  void cancel(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu);
    cancelled.push_back(id);
  }
  HealthInfo health() override { return {}; }
  StatsSnapshot stats() override { return {}; }
  ModelInfo model_info() override { return {}; }
  std::mutex mu;
  std::vector<std::shared_ptr<GenerateStream>> streams;
  std::vector<uint64_t> cancelled;
};

TEST(RpcServer, StopCancelsRequestsInFlightAndLaterEngineEventsAreDropped) {
  HoldingBackend backend;
  auto server = std::make_unique<RpcServer>(backend, RpcServerOptions{});
  server->start();
  RpcClient c("127.0.0.1:" + std::to_string(server->port()), kCallTimeoutS);
  Outcome out;
  bool done = false;
  c.start(tokens_req(2, 10), accept_all, [&](const Outcome& o) {
    out = o;
    done = true;
  });
  for (int i = 0; i < 2500; ++i) {
    c.wait_ms(2);
    std::lock_guard<std::mutex> lock(backend.mu);
    if (!backend.streams.empty()) break;
  }
  std::shared_ptr<GenerateStream> stream;
  {
    std::lock_guard<std::mutex> lock(backend.mu);
    ASSERT_EQ(backend.streams.size(), 1u);
    stream = backend.streams[0];
  }
  stream->tokens({TokenPiece{1, "a"}});  // delivered while the server runs
  server->stop();
  {
    std::lock_guard<std::mutex> lock(backend.mu);
    EXPECT_EQ(backend.cancelled, std::vector<uint64_t>{1});
  }
  stream->tokens({TokenPiece{2, "b"}});  // after stop: dropped, nothing runs
  stream->finished(GenerateResult{});
  server.reset();
  stream->failed(ServeError(ErrorKind::Internal, "late"));
  ASSERT_TRUE(c.run_until_idle(kCallTimeoutS));
  EXPECT_TRUE(done);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error_message.rfind("rpc:", 0), 0u) << out.error_message;
}

TEST(BenchServe, ReportCountsEveryRequest) {
  Harness h;
  BenchServeOptions o;
  o.server = h.addr();
  o.rate = 400;
  o.requests = 40;
  o.realtime_fraction = 0.5;
  o.prompt_min = 1;
  o.prompt_max = 8;
  o.output_min = 2;
  o.output_max = 6;
  const BenchServeReport r = run_bench_serve(o);
  EXPECT_EQ(r.cls[0].sent + r.cls[1].sent, 40);
  EXPECT_EQ(r.cls[0].finished + r.cls[1].finished, 40);
  EXPECT_GT(r.cls[0].sent, 0);
  EXPECT_GT(r.cls[1].sent, 0);
  for (int k = 0; k < 5; ++k) EXPECT_EQ(r.rejected[k], 0) << error_kind_name(static_cast<ErrorKind>(k));
  EXPECT_GE(r.output_tokens, 80);
  EXPECT_LE(r.output_tokens, 240);
  EXPECT_EQ(r.cls[0].ttft.count + r.cls[1].ttft.count, 40);
  EXPECT_EQ(r.cls[0].tpot.count + r.cls[1].tpot.count, 40);  // every request has >= 2 tokens
  EXPECT_GT(r.cls[0].ttft.p50, 0.0);
  EXPECT_LE(r.cls[0].ttft.p50, r.cls[0].ttft.p99);
  EXPECT_GT(r.seconds, 0.0);
  EXPECT_GT(r.output_tokens_per_s, 0.0);
  EXPECT_GT(r.requests_per_s, 0.0);
  const std::string json = to_json(r);
  EXPECT_NE(json.find("\"requests\": 40"), std::string::npos) << json;
  EXPECT_NE(json.find("\"realtime\": {\"sent\": "), std::string::npos) << json;
  EXPECT_NE(to_table(r).find("TTFT p50"), std::string::npos);
}

TEST(BenchServe, RejectionsAreCountedByKind) {
  Harness h(/*max_live=*/1);
  BenchServeOptions o;
  o.server = h.addr();
  o.rate = 2000;
  o.requests = 30;
  o.prompt_min = o.prompt_max = 4;
  o.output_min = o.output_max = 40;
  const BenchServeReport r = run_bench_serve(o);
  const int64_t finished = r.cls[0].finished + r.cls[1].finished;
  EXPECT_EQ(r.cls[0].sent + r.cls[1].sent, 30);
  EXPECT_GT(r.rejected[static_cast<int>(ErrorKind::Overloaded)], 0);
  EXPECT_GE(finished, 1);
  EXPECT_EQ(finished + r.rejected[static_cast<int>(ErrorKind::Overloaded)], 30);
}

}  // namespace
}  // namespace tandem::serve
