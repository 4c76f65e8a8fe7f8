// serve_check: the client side of the serving end-to-end tests (tests/e2e/serve_*_test.sh).
// It talks to a real `tandem serve` over a socket through serve::RpcClient and checks one
// scenario, printing what it saw; exit 0 when the scenario holds, 1 when it does not, 2 on
// usage or connection errors.
//   serve_check HOST:PORT greedy PROMPT_IDS MAX_TOKENS      prints the generated ids
//   serve_check HOST:PORT sampled PROMPT_IDS MAX_TOKENS     the same, seeded top-k/top-p sampling
//   serve_check HOST:PORT streamed INTERVAL_MS PROMPT_IDS MAX_TOKENS
//       greedy, against a server with serve.stream_interval_ms = INTERVAL_MS: the first token
//       comes alone, then at most one message per interval (plus the last); prints the ids
//   serve_check HOST:PORT seeded                            same seed twice -> same text
//   serve_check HOST:PORT cancel                            cancel mid-stream frees blocks
//   serve_check HOST:PORT errors                            each bad request: its typed error
//   serve_check HOST:PORT overload                          full queue -> overloaded; deadline
//   serve_check HOST:PORT soak N SEED                       N random requests, disconnects
//   serve_check HOST:PORT replicas N                        stats list N replicas, each of
//                                                           which finished a request
//   serve_check HOST:PORT live PROMPT_IDS MAX_TOKENS ROUNDS  a server that trains while it
//       serves (tandem run): rounds of the same greedy prompt (realtime twice, batch once)
//       until the server shuts down; every reply of one weights version is the same, versions
//       never go back, at least two versions and ROUNDS rounds were seen; with
//       [MAX_STALENESS], stats staleness never exceeded it (serve.mode dedicated)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "serve/rpc_client.h"

namespace {

using namespace tandem::serve;
using Clock = std::chrono::steady_clock;

int failures = 0;
void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) out.push_back(std::stoi(t));
  return out;
}

// Polls stats until no sequence is active and every KV block is free (or the timeout passes).
bool drained(RpcClient& c, double timeout_s, StatsSnapshot* last) {
  const auto t0 = Clock::now();
  for (;;) {
    *last = c.stats();
    if (last->active_sequences == 0 && last->kv_blocks_used == 0 && last->queue_depth[0] == 0 &&
        last->queue_depth[1] == 0)
      return true;
    if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string run_text(RpcClient& c, const GenerateRequest& r, RpcClient::GenerateOutcome* out) {
  std::string text;
  *out = c.generate(r, [&](const std::vector<TokenPiece>& ps) {
    for (const TokenPiece& p : ps) text += p.text;
    return true;
  });
  return text;
}

int greedy(RpcClient& c, const std::string& ids, int max_tokens, bool sample = false) {
  GenerateRequest r;
  if (sample) {
    r.temperature = 1.0f;
    r.top_k = 50;
    r.top_p = 0.9f;
    r.seed = 77;
  }
  r.prompt_tokens = parse_ids(ids);
  r.max_tokens = max_tokens;
  std::vector<int32_t> got;
  auto o = c.generate(r, [&](const std::vector<TokenPiece>& ps) {
    for (const TokenPiece& p : ps) got.push_back(p.id);
    return true;
  });
  if (!o.ok) {
    std::fprintf(stderr, "greedy: %s: %s\n", error_kind_name(o.error_kind), o.error_message.c_str());
    return 1;
  }
  for (size_t i = 0; i < got.size(); ++i) std::printf("%s%d", i ? "," : "", got[i]);
  std::printf("\n");
  return static_cast<int>(got.size()) == o.result.output_tokens ? 0 : 1;
}

int seeded(RpcClient& c) {
  GenerateRequest r;
  r.prompt_text = "The jury said";
  r.max_tokens = 24;
  r.temperature = 0.9f;
  r.top_k = 40;
  r.top_p = 0.95f;
  r.seed = 1234;
  RpcClient::GenerateOutcome a, b;
  const std::string t1 = run_text(c, r, &a), t2 = run_text(c, r, &b);
  check(a.ok && b.ok, "both seeded requests succeed");
  check(t1 == t2, "same seed, same text: '" + t1 + "'");
  check(a.result.output_tokens == b.result.output_tokens, "same token count");
  return failures ? 1 : 0;
}

int cancel(const std::string& addr) {
  // A second client (own thread, own event loop) reads stats on request while the stream runs.
  std::mutex mu;
  std::condition_variable cv;
  bool want = false, have = false, quit = false;
  StatsSnapshot mid;
  std::thread watcher([&] {
    RpcClient w(addr);
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return want || quit; });
      if (quit) return;
      lock.unlock();
      StatsSnapshot s = w.stats();
      lock.lock();
      mid = s;
      want = false;
      have = true;
      cv.notify_all();
    }
  });
  RpcClient c(addr);
  const int64_t tokens_before = c.stats().output_tokens_total;
  GenerateRequest r;
  r.prompt_text = "Once upon a time";
  r.max_tokens = 59;
  int seen = 0;
  auto o = c.generate(r, [&](const std::vector<TokenPiece>& ps) {
    if (seen == 0) {  // first piece: look at the server's blocks, then drop the call
      std::unique_lock<std::mutex> lock(mu);
      want = true;
      cv.notify_all();
      cv.wait(lock, [&] { return have; });
    }
    seen += static_cast<int>(ps.size());
    return false;  // cancels the request
  });
  {
    std::lock_guard<std::mutex> lock(mu);
    quit = true;
    cv.notify_all();
  }
  watcher.join();
  check(o.cancelled, "the call was cancelled after " + std::to_string(seen) + " token(s)");
  check(mid.kv_blocks_used > 0 && mid.active_sequences == 1,
        "mid-stream: " + std::to_string(mid.kv_blocks_used) + " KV blocks in use, " +
            std::to_string(mid.active_sequences) + " active");
  StatsSnapshot s;
  const bool clean = drained(c, 10.0, &s);
  check(clean, "after the cancel every KV block is free (used " + std::to_string(s.kv_blocks_used) + ", free " +
                   std::to_string(s.kv_blocks_free) + " of " + std::to_string(s.kv_blocks_total) + ")");
  check(s.kv_blocks_free == s.kv_blocks_total && s.kv_blocks_total > 0, "free == total");
  check(s.requests_cancelled >= 1, "stats count the cancel");
  const int64_t made = s.output_tokens_total - tokens_before;
  check(made < 59, "the server stopped generating (" + std::to_string(made) + " of 59 tokens)");
  return failures ? 1 : 0;
}

int errors(RpcClient& c) {
  const ModelInfo m = c.model_info();
  auto expect_invalid = [&](GenerateRequest r, const std::string& what) {
    RpcClient::GenerateOutcome o;
    run_text(c, r, &o);
    check(!o.ok && o.error_kind == ErrorKind::InvalidRequest,
          what + " -> invalid_request (" + o.error_message + ")");
    GenerateRequest good;
    good.prompt_text = "Hello";
    good.max_tokens = 3;
    RpcClient::GenerateOutcome g;
    run_text(c, good, &g);
    check(g.ok && g.result.output_tokens == 3, "  the next good request succeeds");
  };
  GenerateRequest r;
  r.max_tokens = 4;
  expect_invalid(r, "empty prompt");
  r.prompt_tokens = {1, m.vocab};
  expect_invalid(r, "token id = vocab");
  r.prompt_tokens = {1, 2, 3};
  r.max_tokens = m.seq_len;
  expect_invalid(r, "prompt + max_tokens > seq_len");
  r.max_tokens = 4;
  r.temperature = -1;
  expect_invalid(r, "negative temperature");
  r.temperature = 0.5f;
  r.top_p = 1.5f;
  expect_invalid(r, "top_p 1.5");
  r.top_p = 1;
  r.top_k = -2;
  expect_invalid(r, "top_k -2");
  r.top_k = 0;
  r.stop = {""};
  expect_invalid(r, "an empty stop sequence");
  r.stop = std::vector<std::string>(9, "x");
  expect_invalid(r, "nine stop sequences");
  return failures ? 1 : 0;
}

int overload(const std::string& addr) {
  // The test server runs with serve.max_seqs=1 and queues of 2: one long request runs, two
  // wait, the rest are refused with overloaded.
  const int n = 8;
  std::vector<RpcClient::GenerateOutcome> out(n);
  std::vector<std::thread> th;
  for (int i = 0; i < n; ++i)
    th.emplace_back([&, i] {
      RpcClient c(addr);
      GenerateRequest r;
      r.prompt_text = "The long request number " + std::to_string(i);
      r.max_tokens = 50;
      out[i] = c.generate(r, [](const std::vector<TokenPiece>&) { return true; });
    });
  for (auto& t : th) t.join();
  int ok = 0, over = 0;
  double retry = 0;
  for (const auto& o : out) {
    ok += o.ok;
    if (!o.ok && o.error_kind == ErrorKind::Overloaded) {
      ++over;
      retry = o.retry_after_s;
    }
  }
  check(ok >= 1 && over >= 1, "8 concurrent requests: " + std::to_string(ok) + " served, " +
                                  std::to_string(over) + " overloaded");
  check(ok + over == n, "every request either served or refused with overloaded");
  check(retry > 0, "overloaded carries a retry-after hint (" + std::to_string(retry) + " s)");
  // A realtime request with a 2 ms deadline behind a running 50-token request expires
  // (queued, or mid-reply: the deadline covers the whole reply).
  RpcClient c(addr);
  std::thread longer([&] {
    RpcClient cc(addr);
    GenerateRequest r;
    r.prompt_text = "Another long one";
    r.max_tokens = 50;
    cc.generate(r, [](const std::vector<TokenPiece>&) { return true; });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  GenerateRequest late;
  late.prompt_text = "Hurry";
  late.max_tokens = 30;
  late.priority = Priority::Realtime;
  late.deadline_s = 0.002;
  RpcClient::GenerateOutcome d;
  run_text(c, late, &d);
  longer.join();
  check(!d.ok && d.error_kind == ErrorKind::DeadlineExceeded,
        std::string("a request past its deadline -> ") + (d.ok ? "ok" : error_kind_name(d.error_kind)) +
            " (" + d.error_message + ")");
  StatsSnapshot s;
  const bool clean = drained(c, 30.0, &s);
  check(clean, "every KV block free afterwards");
  check(s.rejected[static_cast<int>(ErrorKind::Overloaded)] == over &&
            s.rejected[static_cast<int>(ErrorKind::DeadlineExceeded)] == 1,
        "stats count " + std::to_string(s.rejected[1]) + " overloaded and " + std::to_string(s.rejected[2]) +
            " deadline_exceeded");
  GenerateRequest good;
  good.prompt_text = "Still serving";
  good.max_tokens = 2;
  RpcClient::GenerateOutcome g;
  run_text(c, good, &g);
  check(g.ok, "the server keeps serving");
  return failures ? 1 : 0;
}

int soak(const std::string& addr, int n, uint32_t seed) {
  const int workers = 8;
  std::vector<std::thread> th;
  std::vector<int> done(workers), cut(workers), bad(workers);
  for (int w = 0; w < workers; ++w)
    th.emplace_back([&, w] {
      std::mt19937 rng(seed + static_cast<uint32_t>(w));
      RpcClient c(addr);
      const ModelInfo m = c.model_info();
      for (int i = w; i < n; i += workers) {
        GenerateRequest r;
        const int plen = 1 + static_cast<int>(rng() % 40);
        for (int j = 0; j < plen; ++j) r.prompt_tokens.push_back(static_cast<int32_t>(rng() % 50000));
        r.max_tokens = 1 + static_cast<int>(rng() % std::min(24, m.seq_len - plen));
        r.priority = rng() % 4 == 0 ? Priority::Realtime : Priority::Batch;
        r.temperature = rng() % 2 ? 0.0f : 0.8f;
        r.seed = rng();
        const int stop_after = rng() % 5 == 0 ? static_cast<int>(rng() % 4) + 1 : -1;
        int seen = 0;
        auto o = c.generate(r, [&](const std::vector<TokenPiece>& ps) {
          seen += static_cast<int>(ps.size());
          return stop_after < 0 || seen < stop_after;
        });
        if (o.cancelled) ++cut[w];
        else if (o.ok) ++done[w];
        else if (o.error_kind != ErrorKind::Overloaded) {
          ++bad[w];
          std::fprintf(stderr, "soak: %s: %s\n", error_kind_name(o.error_kind), o.error_message.c_str());
        }
      }
    });
  for (auto& t : th) t.join();
  int d = 0, x = 0, b = 0;
  for (int w = 0; w < workers; ++w) {
    d += done[w];
    x += cut[w];
    b += bad[w];
  }
  RpcClient c(addr);
  StatsSnapshot s;
  const bool clean = drained(c, 30.0, &s);
  std::printf("soak: %d requests: %d finished, %d disconnected mid-stream, %d failed\n", n, d, x, b);
  check(b == 0, "no request failed");
  check(d + x + b <= n && d > n / 2, "most requests finished");
  check(clean, "every KV block free at the end (used " + std::to_string(s.kv_blocks_used) + " of " +
                   std::to_string(s.kv_blocks_total) + ")");
  return failures ? 1 : 0;
}

// The router's stats: N replicas, each of which served at least one request; modelInfo dp N.
int replicas(RpcClient& c, int n) {
  const StatsSnapshot s = c.stats();
  std::string per;
  bool each = true;
  for (size_t i = 0; i < s.replicas.size(); ++i) {
    per += (i ? ", " : "") + std::to_string(s.replicas[i].requests_finished);
    each = each && s.replicas[i].requests_finished >= 1;
  }
  check(static_cast<int>(s.replicas.size()) == n,
        "stats list " + std::to_string(s.replicas.size()) + " replicas (want " + std::to_string(n) + ")");
  check(each, "every replica finished requests (" + per + ")");
  check(c.model_info().dp == n, "modelInfo reports dp " + std::to_string(n));
  return failures ? 1 : 0;
}

// One greedy request; false when the server refused it or went away (the run ended).
struct LiveReply {
  std::vector<int32_t> ids;
  int64_t version = 0;
  double ttft_s = 0.0;
};
bool live_request(RpcClient& c, const std::vector<int32_t>& prompt, int max_tokens, Priority prio,
                  LiveReply* out, std::string* why) {
  GenerateRequest r;
  r.prompt_tokens = prompt;
  r.max_tokens = max_tokens;
  r.priority = prio;
  out->ids.clear();
  try {
    auto o = c.generate(r, [&](const std::vector<TokenPiece>& ps) {
      for (const TokenPiece& p : ps) out->ids.push_back(p.id);
      return true;
    });
    if (!o.ok) {
      *why = std::string(error_kind_name(o.error_kind)) + ": " + o.error_message;
      return false;
    }
    out->version = o.result.weights_version;
    out->ttft_s = o.result.ttft_s;
    return true;
  } catch (const std::exception& e) {
    *why = e.what();
    return false;
  }
}

int live(const std::string& addr, const std::string& ids, int max_tokens, int min_rounds, int max_staleness) {
  const std::vector<int32_t> prompt = parse_ids(ids);
  std::map<int64_t, std::vector<int32_t>> by_version;
  std::map<int64_t, int> count;
  int64_t last_version = -1, training_seen = 0, staleness_seen = 0, checked_version = -1;
  int rounds = 0, consistent = 1, ordered = 1, staleness_ok = 1;
  double worst_ttft = 0.0;
  std::string why;
  try {
    RpcClient c(addr);
    for (;; ++rounds) {
      const Priority order[3] = {Priority::Realtime, Priority::Realtime, Priority::Batch};
      bool alive = true;
      for (Priority p : order) {
        LiveReply rep;
        if (!live_request(c, prompt, max_tokens, p, &rep, &why)) {
          alive = false;
          break;
        }
        if (p == Priority::Realtime) worst_ttft = std::max(worst_ttft, rep.ttft_s);
        if (rep.version < last_version) ordered = 0;
        last_version = std::max(last_version, rep.version);
        auto [it, fresh] = by_version.emplace(rep.version, rep.ids);
        if (!fresh && it->second != rep.ids) consistent = 0;
        ++count[rep.version];
      }
      if (!alive) break;
      try {
        const StatsSnapshot st = c.stats();
        training_seen = std::max(training_seen, st.training_version);
        staleness_seen = std::max(staleness_seen, st.staleness);
        checked_version = last_version;  // the replies this stats call must cover
        // One server: staleness is its own difference. Merged (replicas listed): each replica's
        // is exact, the merge is the worst of them, and no more than the merged difference.
        if (st.replicas.empty()) {
          if (st.staleness != st.training_version - st.weights_version) staleness_ok = 0;
        } else {
          int64_t worst = 0;
          for (const StatsSnapshot& r : st.replicas) {
            if (r.staleness != r.training_version - r.weights_version) staleness_ok = 0;
            worst = std::max(worst, r.staleness);
          }
          if (st.staleness != worst || st.staleness > st.training_version - st.weights_version) staleness_ok = 0;
        }
      } catch (const std::exception&) {
        break;
      }
    }
  } catch (const std::exception& e) {
    why = e.what();
  }
  std::printf("live: %d full rounds, ended by: %s\n", rounds, why.c_str());
  for (const auto& [v, out] : by_version) {
    std::printf("  version %lld: %d replies:", static_cast<long long>(v), count[v]);
    for (size_t i = 0; i < out.size() && i < 12; ++i) std::printf(" %d", out[i]);
    std::printf("%s\n", out.size() > 12 ? " ..." : "");
  }
  check(rounds >= min_rounds, "at least " + std::to_string(min_rounds) + " rounds before the run ended (" + std::to_string(rounds) + ")");
  check(consistent == 1, "every reply of one weights version is the same");
  check(ordered == 1, "weights versions never go back");
  check(by_version.size() >= 2, "the weights version advanced while serving (" + std::to_string(by_version.size()) + " versions)");
  check(training_seen >= checked_version, "stats trainingVersion (" + std::to_string(training_seen) + ") >= the newest reply's version before it (" + std::to_string(checked_version) + ")");
  check(staleness_ok == 1, "stats staleness = trainingVersion - weightsVersion (merged: the worst replica's)");
  if (max_staleness >= 0)
    check(staleness_seen <= max_staleness, "stats staleness stayed within " + std::to_string(max_staleness) +
                                               " versions (worst seen " + std::to_string(staleness_seen) + ")");
  std::printf("live: worst realtime TTFT %.1f ms, worst staleness %lld versions\n", worst_ttft * 1e3,
              static_cast<long long>(staleness_seen));
  return failures ? 1 : 0;
}

}  // namespace

// Greedy generation counting the streamed messages (serve.stream_interval_ms).
int streamed(RpcClient& c, int interval_ms, const std::string& ids, int max_tokens) {
  GenerateRequest r;
  r.prompt_tokens = parse_ids(ids);
  r.max_tokens = max_tokens;
  std::vector<int32_t> got;
  std::vector<size_t> sizes;
  const auto t0 = Clock::now();
  auto o = c.generate(r, [&](const std::vector<TokenPiece>& ps) {
    sizes.push_back(ps.size());
    for (const TokenPiece& p : ps) got.push_back(p.id);
    return true;
  });
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!o.ok) {
    std::fprintf(stderr, "streamed: %s: %s\n", error_kind_name(o.error_kind), o.error_message.c_str());
    return 1;
  }
  for (size_t i = 0; i < got.size(); ++i) std::printf("%s%d", i ? "," : "", got[i]);
  std::printf("\n");
  const size_t most = 2 + static_cast<size_t>(ms / interval_ms);
  std::fprintf(stderr, "streamed: %zu tokens in %zu messages over %.0f ms (interval %d ms: at most %zu)\n",
               got.size(), sizes.size(), ms, interval_ms, most);
  check(static_cast<int>(got.size()) == o.result.output_tokens, "every token arrived");
  check(!sizes.empty() && sizes[0] == 1, "the first token came alone");
  check(sizes.size() <= most, "at most one message per interval after the first");
  return failures ? 1 : 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: serve_check HOST:PORT greedy|seeded|cancel|errors|overload|soak ...\n");
    return 2;
  }
  const std::string addr = argv[1], what = argv[2];
  try {
    // One RpcClient per thread at a time (one KJ event loop per thread).
    if (what == "overload") return overload(addr);
    if (what == "cancel") return cancel(addr);
    if (what == "live" && (argc == 6 || argc == 7))
      return live(addr, argv[3], std::atoi(argv[4]), std::atoi(argv[5]), argc == 7 ? std::atoi(argv[6]) : -1);
    if (what == "soak" && argc == 5) return soak(addr, std::atoi(argv[3]), static_cast<uint32_t>(std::atoi(argv[4])));
    RpcClient c(addr);
    if (what == "greedy" && argc == 5) return greedy(c, argv[3], std::atoi(argv[4]));
    if (what == "sampled" && argc == 5) return greedy(c, argv[3], std::atoi(argv[4]), true);
    if (what == "streamed" && argc == 6) return streamed(c, std::atoi(argv[3]), argv[4], std::atoi(argv[5]));
    if (what == "seeded") return seeded(c);
    if (what == "errors") return errors(c);
    if (what == "replicas" && argc == 4) return replicas(c, std::atoi(argv[3]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "serve_check: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "serve_check: unknown scenario or arguments\n");
  return 2;
}
