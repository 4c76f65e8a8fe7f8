// serve_hostile: the hostile client of the serving end-to-end tests (tests/e2e/
// serve_hostile_test.sh), run against a real `tandem serve` over a socket. Each scenario prints
// what it saw; exit 0 when it holds, 1 when it does not, 2 on usage errors.
//   serve_hostile HOST:PORT prompts      a 1 MB single-word prompt, a 10 MB prompt and prompts
//       just under the message limit each get their error quickly, while a second connection's
//       `health` and a normal request keep their usual latency
//   serve_hostile HOST:PORT sinks        a slow sink (50 ms a call) gets every token before the
//       Outcome, in order, batched; a stalled sink ends with deadlineExceeded and frees its KV
//       blocks; a throwing sink ends as internal, counted once; a null sink and parameters of
//       the wrong type get typed invalid requests
//   serve_hostile HOST:PORT values       a NUL inside a text prompt is tokenized, not cut; a
//       temperature below the smallest normal float is served greedy
//   serve_hostile HOST:PORT memory PID IDLE_S MAX_CONNECTIONS
//       the server's resident memory (read from /proc/PID) after unique long words, 20
//       connections each sending 16 MB of one message and 2,000 idle connections returns to
//       within 24 MB of its level before them; the idle connections are closed by the server
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "serve/rpc_client.h"
#include "tests/serve/raw_client.h"

namespace {

using namespace tandem::serve;
using testing::RawClient;
using testing::RawOutcome;
using testing::SinkLog;
using testing::SinkMode;
using Clock = std::chrono::steady_clock;

int failures = 0;
void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++failures;
}
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string random_word(std::mt19937& rng, size_t n) {
  std::string w;
  w.reserve(n);
  for (size_t i = 0; i < n; ++i) w.push_back(static_cast<char>('a' + rng() % 26));
  return w;
}

void append_word(std::string& text, std::mt19937& rng, size_t n) {
  text.push_back(' ');
  for (size_t i = 0; i < n; ++i) text.push_back(static_cast<char>('a' + rng() % 26));
}

GenerateRequest greedy_req(const std::string& text, int max_tokens) {
  GenerateRequest r;
  r.prompt_text = text;
  r.max_tokens = max_tokens;
  return r;
}

// A second connection asking `health` and a short greedy request over and over, on a thread
// of its own; it records the slowest of each.
class Watch {
 public:
  explicit Watch(const std::string& addr) : addr_(addr) {}
  void start() {
    thread_ = std::thread([this] {
      RpcClient c(addr_);
      while (!stop_) {
        auto t0 = Clock::now();
        if (!c.health().live) ++bad_;
        worst_health_ = std::max(worst_health_.load(), since(t0));
        t0 = Clock::now();
        const auto o = c.generate(greedy_req("The jury said", 4), [](const std::vector<TokenPiece>&) { return true; });
        if (!o.ok) ++bad_;
        worst_request_ = std::max(worst_request_.load(), since(t0));
        ++rounds_;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  double worst_health() const { return worst_health_; }
  double worst_request() const { return worst_request_; }
  int rounds() const { return rounds_; }
  int bad() const { return bad_; }

 private:
  std::string addr_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<double> worst_health_{0}, worst_request_{0};
  std::atomic<int> rounds_{0}, bad_{0};
};

int prompts(const std::string& addr) {
  Watch base(addr);
  base.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  base.stop();
  std::printf("usual latency: health %.1f ms, a 4-token request %.1f ms (worst of %d rounds)\n",
              base.worst_health() * 1e3, base.worst_request() * 1e3, base.rounds());
  Watch during(addr);
  during.start();
  std::mt19937 rng(1);
  const ModelInfo m = RpcClient(addr).model_info();
  for (size_t bytes : {size_t{1} << 20, size_t{10} << 20}) {
    RawClient c(addr);
    const std::string text = bytes == (size_t{1} << 20) ? random_word(rng, bytes) : std::string(bytes, 'x');
    SinkLog log;
    const auto t0 = Clock::now();
    const RawOutcome o = c.generate(greedy_req(text, 4), SinkMode::Prompt, 0, log);
    const double took = since(t0);
    const bool refused = o.rpc_failed || (!o.ok && o.kind == ErrorKind::InvalidRequest);
    check(refused, std::to_string(bytes >> 20) + " MB prompt refused: " + (o.rpc_failed ? o.rpc_error : o.message));
    check(took < 10.0, "  within " + std::to_string(took) + " s");
  }
  // Prompts under the message limit that still cannot fit: typed invalid_request, at once.
  RawClient c(addr);
  double worst = 0;
  for (int i = 0; i < 20; ++i) {
    SinkLog log;
    // One word that passes the byte bound (seq_len x 110 bytes) but not the token bound, or
    // many short words (about 4 bytes a token).
    const size_t n = static_cast<size_t>(m.seq_len) * (i % 2 ? 110 : 16);
    std::string text = i % 2 ? random_word(rng, n) : std::string();
    while (text.size() < n) append_word(text, rng, 6);
    const auto t0 = Clock::now();
    const RawOutcome o = c.generate(greedy_req(text, 4), SinkMode::Prompt, 0, log);
    worst = std::max(worst, since(t0));
    if (o.rpc_failed || o.ok || o.kind != ErrorKind::InvalidRequest) {
      check(false, "a " + std::to_string(text.size()) + "-byte prompt: " + (o.ok ? "served" : o.rpc_error + o.message));
      break;
    }
  }
  check(worst < 2.0, "20 over-long prompts under the message limit: invalid_request, the slowest in " +
                         std::to_string(worst) + " s");
  during.stop();
  std::printf("during: health %.1f ms, a 4-token request %.1f ms (worst of %d rounds)\n",
              during.worst_health() * 1e3, during.worst_request() * 1e3, during.rounds());
  check(during.bad() == 0, "the second connection's calls all succeeded");
  check(during.rounds() >= 3, "the second connection kept being answered (" + std::to_string(during.rounds()) + " rounds)");
  const double bound_h = std::max(1.0, 10 * base.worst_health()), bound_r = std::max(2.0, 10 * base.worst_request());
  check(during.worst_health() < bound_h, "health stayed within " + std::to_string(bound_h) + " s");
  check(during.worst_request() < bound_r, "a normal request stayed within " + std::to_string(bound_r) + " s");
  return failures ? 1 : 0;
}

// Polls stats (on a connection of its own) until no sequence runs and no KV block is used.
bool drained(const std::string& addr, double timeout_s, StatsSnapshot* s) {
  RpcClient c(addr);
  const auto t0 = Clock::now();
  for (;;) {
    *s = c.stats();
    if (s->active_sequences == 0 && s->kv_blocks_used == 0) return true;
    if (since(t0) > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Each phase on connections of its own: the test server closes connections idle for 2 s.
int sinks(const std::string& addr, double sink_timeout_s) {
  const StatsSnapshot before = RpcClient(addr).stats();
  {
    RawClient c(addr);
    SinkLog log;
    const RawOutcome o = c.generate(greedy_req("The jury said", 40), SinkMode::Slow, 0.05, log);
    check(o.ok, "slow sink: the request succeeds " + o.message + o.rpc_error);
    check(o.tokens_done_at_outcome == static_cast<size_t>(o.result.output_tokens) && o.result.output_tokens > 0,
          "slow sink: all " + std::to_string(o.result.output_tokens) + " tokens processed before the Outcome (" +
              std::to_string(o.tokens_done_at_outcome) + ")");
    check(log.call_sizes.size() < static_cast<size_t>(o.result.output_tokens),
          "slow sink: tokens batched (" + std::to_string(log.call_sizes.size()) + " calls)");
    // The same tokens as a plain greedy request.
    std::vector<int32_t> plain;
    RpcClient(addr).generate(greedy_req("The jury said", 40), [&](const std::vector<TokenPiece>& ps) {
      for (const auto& p : ps) plain.push_back(p.id);
      return true;
    });
    check(log.ids == plain, "slow sink: the same tokens, in order, as a fast client");
  }
  {
    RawClient c(addr);
    SinkLog log;
    const auto t0 = Clock::now();
    const RawOutcome o = c.generate(greedy_req("Once upon a time", 50), SinkMode::Stall, 0, log);
    const double took = since(t0);
    check(!o.ok && o.kind == ErrorKind::DeadlineExceeded,
          "stalled sink: deadline_exceeded (" + o.message + o.rpc_error + ")");
    check(took < sink_timeout_s + 5.0, "stalled sink: ended after " + std::to_string(took) + " s");
    StatsSnapshot s;
    check(drained(addr, 5.0, &s), "stalled sink: every KV block free afterwards (" + std::to_string(s.kv_blocks_used) +
                                       " used)");
  }
  {
    RawClient c(addr);
    SinkLog log;
    const RawOutcome o = c.generate(greedy_req("Once upon a time", 50), SinkMode::Throw, 0, log);
    check(!o.ok && o.kind == ErrorKind::Internal, "throwing sink: internal (" + o.message + o.rpc_error + ")");
    StatsSnapshot s;
    check(drained(addr, 5.0, &s), "throwing sink: every KV block free afterwards");
  }
  {
    RawClient c(addr);
    const RawOutcome o = c.generate_without_sink(greedy_req("Hello", 3));
    check(!o.rpc_failed && !o.ok && o.kind == ErrorKind::InvalidRequest, "null sink: invalid_request (" + o.message + ")");
    const RawOutcome w = c.generate_with_text_params("not a struct");
    check(!w.rpc_failed && !w.ok && w.kind == ErrorKind::InvalidRequest,
          "a Text where GenerateParams belongs: invalid_request (" + w.message + w.rpc_error + ")");
  }
  const StatsSnapshot after = RpcClient(addr).stats();
  auto delta = [&](ErrorKind k) { return after.rejected[static_cast<int>(k)] - before.rejected[static_cast<int>(k)]; };
  check(delta(ErrorKind::Internal) == 1, "stats count the throwing sink once under internal (" +
                                             std::to_string(delta(ErrorKind::Internal)) + ")");
  check(delta(ErrorKind::DeadlineExceeded) == 1, "stats count the stalled sink once under deadline_exceeded");
  check(delta(ErrorKind::InvalidRequest) == 2, "stats count the null sink and the wrong type under invalid_request");
  check(after.requests_finished - before.requests_finished == 2, "stats count 2 finished requests (" +
                                                                     std::to_string(after.requests_finished - before.requests_finished) + ")");
  return failures ? 1 : 0;
}

int values(const std::string& addr) {
  RpcClient c(addr);
  GenerateRequest r = greedy_req(std::string("The\0jury said it did find", 25), 4);
  auto o = c.generate(r, [](const std::vector<TokenPiece>&) { return true; });
  check(o.ok && o.result.prompt_tokens > 2, "a NUL inside the prompt: " + std::to_string(o.result.prompt_tokens) +
                                                " prompt tokens (the text was not cut at it)");
  auto ids_of = [&](float temperature) {
    GenerateRequest g = greedy_req("The jury said", 12);
    g.temperature = temperature;
    g.seed = 5;
    std::vector<int32_t> ids;
    auto out = c.generate(g, [&](const std::vector<TokenPiece>& ps) {
      for (const auto& p : ps) ids.push_back(p.id);
      return true;
    });
    return out.ok ? ids : std::vector<int32_t>{};
  };
  const auto greedy = ids_of(0.0f);
  check(!greedy.empty(), "greedy request served");
  check(ids_of(1e-40f) == greedy, "temperature 1e-40 (subnormal) is served greedy");
  check(ids_of(5e-7f) == greedy, "temperature 5e-7 (below 1e-6) is served greedy");
  return failures ? 1 : 0;
}

// ------------------------------------------------------------------------------- memory

long rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int tcp_connect(const std::string& addr) {
  const auto colon = addr.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::atoi(addr.c_str() + colon + 1)));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Whether the server closed fd within timeout_s: what it sent last (e.g. Cap'n Proto's Abort
// naming why) is read and dropped until EOF or a reset.
bool closed_by_peer(int fd, double timeout_s) {
  const auto t0 = Clock::now();
  for (;;) {
    const double left = timeout_s - since(t0);
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, left > 0 ? static_cast<int>(left * 1000) : 0) <= 0) return false;
    char b[4096];
    const ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
}

int memory(const std::string& addr, int pid, double idle_s, int max_connections) {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
  const int idle_wanted = static_cast<int>(std::min<rlim_t>(2000, lim.rlim_cur > 64 ? lim.rlim_cur - 64 : 0));
  {
    RpcClient c(addr);  // warm: tokenizer cache, allocator pools
    for (int i = 0; i < 20; ++i) c.generate(greedy_req("The jury said", 8), [](const std::vector<TokenPiece>&) { return true; });
  }
  const long rss0 = rss_kb(pid);
  std::mt19937 rng(2);
  // Unique long words: five 10 MB prompts (over the message limit), then many under it.
  for (int i = 0; i < 5; ++i) {
    RawClient c(addr);
    std::string text;
    while (text.size() < (10u << 20)) append_word(text, rng, 200 + rng() % 2000);
    SinkLog log;
    c.generate(greedy_req(text, 4), SinkMode::Prompt, 0, log);
  }
  {
    RpcClient c(addr);
    for (int i = 0; i < 300; ++i) {
      std::string text;
      while (text.size() < 3000) append_word(text, rng, 3 + rng() % 140);
      c.generate(greedy_req(text, 2), [](const std::vector<TokenPiece>&) { return true; });
    }
  }
  const long rss_words = rss_kb(pid);
  // 20 connections, each the start of one 16 MB message, sent as fast as the server takes it.
  int partial_closed = 0;
  {
    std::vector<int> fds;
    for (int i = 0; i < 20; ++i) {
      const int fd = tcp_connect(addr);
      if (fd < 0) continue;
      const uint32_t header[2] = {0, (16u << 20) / 8};  // one segment of 2 M words
      ::send(fd, header, sizeof header, MSG_NOSIGNAL);
      std::vector<char> chunk(1 << 20, 0);
      for (int k = 0; k < 16; ++k)
        if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) break;
      fds.push_back(fd);
    }
    for (int fd : fds) partial_closed += closed_by_peer(fd, 5.0);
    for (int fd : fds) ::close(fd);
  }
  check(partial_closed == 20, "20 connections sending the start of a 16 MB message: the server closed " +
                                  std::to_string(partial_closed) + " of 20");
  const long rss_partial = rss_kb(pid);
  // Idle connections: beyond max_connections closed at once, the rest after the idle time.
  std::vector<int> idle;
  for (int i = 0; i < idle_wanted; ++i) {
    const int fd = tcp_connect(addr);
    if (fd >= 0) idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int refused = 0;
  for (int fd : idle) refused += closed_by_peer(fd, 0.0);
  check(static_cast<int>(idle.size()) - refused <= max_connections,
        std::to_string(idle.size()) + " idle connections: " + std::to_string(idle.size() - refused) +
            " held, at most serve.max_connections = " + std::to_string(max_connections));
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>((idle_s + 2.0) * 1000)));
  int still_open = 0;
  for (int fd : idle) still_open += !closed_by_peer(fd, 0.0);
  check(still_open == 0, "after serve.idle_timeout_s every idle connection was closed by the server (" +
                             std::to_string(still_open) + " open)");
  for (int fd : idle) ::close(fd);
  {
    RpcClient c(addr);
    check(c.health().live, "the server still answers");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long rss1 = rss_kb(pid);
  std::printf("leader RSS: %ld kB before, %ld after the long words, %ld after the partial messages, %ld at the end\n",
              rss0, rss_words, rss_partial, rss1);
  check(rss1 - rss0 < 24 * 1024, "resident memory back within 24 MB of its level before (+" +
                                     std::to_string((rss1 - rss0) / 1024) + " MB)");
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: serve_hostile HOST:PORT prompts|sinks SINK_TIMEOUT_S|values|memory PID IDLE_S MAX_CONN\n");
    return 2;
  }
  const std::string addr = argv[1], what = argv[2];
  try {
    if (what == "prompts") return prompts(addr);
    if (what == "sinks" && argc == 4) return sinks(addr, std::atof(argv[3]));
    if (what == "values") return values(addr);
    if (what == "memory" && argc == 6) return memory(addr, std::atoi(argv[3]), std::atof(argv[4]), std::atoi(argv[5]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "serve_hostile %s: %s\n", what.c_str(), e.what());
    return 2;
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "serve_hostile %s: %s\n", what.c_str(), e.getDescription().cStr());
    return 2;
  }
  std::fprintf(stderr, "serve_hostile: unknown scenario or arguments: %s\n", what.c_str());
  return 2;
}
