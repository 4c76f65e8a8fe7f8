// FakeBackend: a ServingBackend without a model, for the RPC front-end tests.
//
// Contract: one worker thread "generates" token i of a request as id = prompt_len + i (text
// "<id> "), one token per live request every token_interval, and ends it with finished(); the
// stream callbacks run on the worker, outside the backend's lock, like the engine's.
// submit() validates (empty prompt or max_tokens < 1 -> InvalidRequest, more than max_live
// live requests -> Overloaded with retry_after 0.25 s) and throws by prompt text:
// "shutdown" -> ShuttingDown, "throw" -> a plain std::runtime_error, "sleep" -> submit() takes
// 2 s before it accepts (outside the lock: a slow tokenization); a prompt "deadline" or
// "internal" fails later on the worker with DeadlineExceeded / Internal. cancel(id) removes
// the request (no event follows) and is counted per id. wait_until() polls with a timeout.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "serve/serving_api.h"

namespace tandem::serve::testing {

class FakeBackend final : public ServingBackend {
 public:
  explicit FakeBackend(int max_live = 1000, std::chrono::microseconds token_interval = std::chrono::microseconds(500))
      : max_live_(max_live), interval_(token_interval), worker_([this] { loop(); }) {}
  ~FakeBackend() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  uint64_t submit(GenerateRequest req, std::shared_ptr<GenerateStream> stream) override {
    if (req.prompt_text == "sleep") std::this_thread::sleep_for(std::chrono::seconds(2));
    std::lock_guard<std::mutex> lock(mu_);
    const int plen = req.prompt_tokens.empty() ? static_cast<int>(req.prompt_text.size())
                                               : static_cast<int>(req.prompt_tokens.size());
    if (plen == 0) return refuse(ErrorKind::InvalidRequest, "empty prompt");
    if (req.max_tokens < 1)
      return refuse(ErrorKind::InvalidRequest, "max_tokens " + std::to_string(req.max_tokens) + " < 1");
    if (req.prompt_text == "shutdown") return refuse(ErrorKind::ShuttingDown, "the server is stopping");
    if (req.prompt_text == "throw") throw std::runtime_error("fake backend bug");
    if (static_cast<int>(live_.size()) >= max_live_)
      return refuse(ErrorKind::Overloaded, "queue full (" + std::to_string(max_live_) + ")", 0.25);
    const uint64_t id = next_id_++;
    last_text_ = req.prompt_text;
    last_stop_ = req.stop;
    Live l;
    l.req = std::move(req);
    l.prompt_len = plen;
    l.stream = std::move(stream);
    l.arrival = std::chrono::steady_clock::now();
    live_.emplace(id, std::move(l));
    ++submitted_;
    cv_.notify_all();
    return id;
  }

  void cancel(uint64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++cancels_[id];
    if (live_.erase(id)) ++cancelled_;
    cv_.notify_all();
  }

  HealthInfo health() override { return HealthInfo{true, true, "fake backend"}; }

  StatsSnapshot stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    StatsSnapshot s;
    s.queue_depth[0] = 3;
    s.queue_depth[1] = 5;
    s.active_sequences = static_cast<int64_t>(live_.size());
    s.kv_blocks_used = 7;
    s.kv_blocks_free = 57;
    s.kv_blocks_total = 64;
    s.ttft[0] = LatencySummary{0.01, 0.02, 0.03, 11};
    s.tpot[1] = LatencySummary{0.001, 0.002, 0.004, 12};
    s.tokens_per_s = 123.5;
    s.weights_version = 42;
    s.requests_finished = finished_;
    s.requests_cancelled = cancelled_;
    for (int k = 0; k < 5; ++k) s.rejected[k] = rejected_[k];
    s.prompt_tokens_total = 1000;
    s.output_tokens_total = 2000;
    return s;
  }

  ModelInfo model_info() override {
    ModelInfo m;
    m.name = "fake-gpt";
    m.layers = 2;
    m.dim = 64;
    m.heads = 4;
    m.vocab = 500;
    m.seq_len = 256;
    m.tp = 2;
    m.layout = "dp1 tp2 pp1";
    m.kv_block_tokens = 16;
    m.kv_blocks = 64;
    m.weights_version = 42;
    return m;
  }

  // Polls pred (under the lock) every millisecond until it holds or timeout_s passed.
  bool wait_until(const std::function<bool()>& pred, double timeout_s = 10.0) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (pred()) return true;
      }
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  // Accessors for wait_until predicates (the lock is held there) or after the traffic ended.
  size_t live_locked() const { return live_.size(); }
  int cancels_of_locked(uint64_t id) const {
    auto it = cancels_.find(id);
    return it == cancels_.end() ? 0 : it->second;
  }
  int64_t cancelled_locked() const { return cancelled_; }
  int64_t submitted_locked() const { return submitted_; }
  size_t live() {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.size();
  }
  std::map<uint64_t, int> cancels() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancels_;
  }
  std::string last_prompt_text() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_text_;
  }
  std::vector<std::string> last_stop() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_stop_;
  }
  uint64_t last_id() {
    std::lock_guard<std::mutex> lock(mu_);
    return next_id_ - 1;
  }

 private:
  struct Live {
    GenerateRequest req;
    int prompt_len = 0, emitted = 0;
    std::shared_ptr<GenerateStream> stream;
    std::chrono::steady_clock::time_point arrival, first;
  };

  uint64_t refuse(ErrorKind k, const std::string& msg, double retry = 0.0) {
    ++rejected_[static_cast<int>(k)];
    throw ServeError(k, msg, retry);
  }

  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!quit_) {
      if (live_.empty()) {
        cv_.wait(lock, [&] { return quit_ || !live_.empty(); });
        continue;
      }
      // One step: every live request gets its next token, or its end.
      std::vector<std::function<void()>> events;
      const auto now = std::chrono::steady_clock::now();
      for (auto it = live_.begin(); it != live_.end();) {
        Live& l = it->second;
        auto stream = l.stream;
        if (l.req.prompt_text == "deadline" || l.req.prompt_text == "internal") {
          const ErrorKind k = l.req.prompt_text == "deadline" ? ErrorKind::DeadlineExceeded : ErrorKind::Internal;
          ++rejected_[static_cast<int>(k)];
          events.push_back([stream, k] { stream->failed(ServeError(k, std::string("fake ") + error_kind_name(k))); });
          it = live_.erase(it);
          continue;
        }
        if (l.emitted < l.req.max_tokens) {
          if (l.emitted == 0) l.first = now;
          const int32_t id = l.prompt_len + l.emitted++;
          events.push_back([stream, id] { stream->tokens({TokenPiece{id, std::to_string(id) + " "}}); });
          ++it;
          continue;
        }
        GenerateResult r;
        r.finish = FinishReason::Length;
        r.prompt_tokens = l.prompt_len;
        r.output_tokens = l.emitted;
        r.ttft_s = std::chrono::duration<double>(l.first - l.arrival).count();
        r.total_s = std::chrono::duration<double>(now - l.arrival).count();
        r.weights_version = 42;
        ++finished_;
        events.push_back([stream, r] { stream->finished(r); });
        it = live_.erase(it);
      }
      lock.unlock();
      for (auto& e : events) e();
      events.clear();  // drops stream references outside the lock
      lock.lock();
      cv_.wait_for(lock, interval_, [&] { return quit_; });
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  const int max_live_;
  const std::chrono::microseconds interval_;
  std::map<uint64_t, Live> live_;
  std::map<uint64_t, int> cancels_;
  uint64_t next_id_ = 1;
  std::string last_text_;
  std::vector<std::string> last_stop_;
  int64_t submitted_ = 0, finished_ = 0, cancelled_ = 0;
  int64_t rejected_[5] = {0, 0, 0, 0, 0};
  bool quit_ = false;
  std::thread worker_;  // last: starts after every member above exists
};

}  // namespace tandem::serve::testing
