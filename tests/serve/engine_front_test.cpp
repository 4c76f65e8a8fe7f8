// EngineFront (serve/engine_front.h) and its drivers (serve/serve_loop.h, serve/engine_window.h)
// with a fake executor and a byte-level tokenizer: text and stop sequences, streaming in
// batches, the stop of the serve loop, and the time cap of serving windows.
#include <gtest/gtest.h>

#include <algorithm>
#include <fmt/format.h>
#include <mutex>
#include <thread>

#include "serve/engine_front.h"
#include "serve/engine_window.h"
#include "serve/serve_loop.h"
#include "tests/serve/fake_executor.h"

namespace tandem::serve {
namespace {

using testing::FakeExecutor;

// GPT-2's byte symbols as \u escapes: 256 one-byte tokens (id = byte), <|endoftext|> = 256 and
// one merge (xy = 257).
BpeTokenizer byte_tokenizer() {
  std::vector<int> printable;
  for (int x = '!'; x <= '~'; ++x) printable.push_back(x);
  for (int x = 0xA1; x <= 0xAC; ++x) printable.push_back(x);
  for (int x = 0xAE; x <= 0xFF; ++x) printable.push_back(x);
  std::string json = "{";
  int shifted = 0;
  for (int b = 0; b < 256; ++b) {
    const bool p = std::find(printable.begin(), printable.end(), b) != printable.end();
    json += fmt::format("\"\\u{:04x}\": {}, ", p ? b : 256 + shifted++, b);
  }
  json += "\"<|endoftext|>\": 256, \"xy\": 257}";
  return BpeTokenizer::from_strings(json, "#version: 0.2\nx y\n", "bytes");
}

// Counts through the alphabet: after 'z' comes 'a'.
int32_t alphabet(const std::vector<int32_t>& ctx) {
  const int32_t c = ctx.back();
  return c >= 'a' && c < 'z' ? c + 1 : 'a';
}

class Recorder : public GenerateStream {
 public:
  void tokens(std::vector<TokenPiece> pieces) override {
    std::lock_guard<std::mutex> l(mu);
    batches.push_back(pieces.size());
    for (auto& p : pieces) {
      ids.push_back(p.id);
      text += p.text;
    }
  }
  void finished(const GenerateResult& r) override {
    std::lock_guard<std::mutex> l(mu);
    ++ends;
    result = r;
  }
  void failed(const ServeError& e) override {
    std::lock_guard<std::mutex> l(mu);
    ++ends;
    error = e.kind();
    message = e.what();
  }
  std::mutex mu;
  std::vector<int32_t> ids;
  std::vector<size_t> batches;
  std::string text, message;
  int ends = 0;
  GenerateResult result;
  ErrorKind error = ErrorKind::Internal;
};

ModelInfo model_info() {
  ModelInfo m;
  m.name = "fake";
  m.vocab = 258;
  m.seq_len = 64;
  return m;
}

EngineOptions engine_options() {
  EngineOptions o;
  o.scheduler.kv_blocks = 64;
  o.scheduler.block_tokens = 4;
  o.scheduler.max_seqs = 4;
  o.scheduler.max_batch_tokens = 64;
  o.scheduler.prefill_chunk = 16;
  o.scheduler.seq_len = 64;
  o.idle_heartbeat_s = 0.002;
  return o;
}

GenerateRequest text_request(const std::string& prompt, int max_tokens, std::vector<std::string> stop = {}) {
  GenerateRequest r;
  r.prompt_text = prompt;
  r.max_tokens = max_tokens;
  r.stop = std::move(stop);
  return r;
}

// Runs the serve loop on its own thread until stop() (the main thread of a real job).
struct LoopThread {
  EngineFront& front;
  FakeExecutor& exec;
  std::thread t;
  LoopThread(EngineFront& f, FakeExecutor& e) : front(f), exec(e), t([this] { serve_loop(front, exec); }) {}
  void stop() {
    front.request_stop();
    if (t.joinable()) t.join();
  }
  ~LoopThread() { stop(); }
};

bool wait_until(const std::function<bool()>& f, double seconds = 20.0) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!f()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

int ends_of(Recorder& r) {
  std::lock_guard<std::mutex> l(r.mu);
  return r.ends;
}

TEST(EngineFront, TextStreamsAndAStopSequenceEndsTheRequestAndFreesItsBlocks) {
  const BpeTokenizer tok = byte_tokenizer();
  EngineFront front(model_info(), &tok, engine_options(), 5);
  FakeExecutor exec(64, 4, alphabet);
  LoopThread loop(front, exec);
  auto plain = std::make_shared<Recorder>();
  auto stopped = std::make_shared<Recorder>();
  front.submit(text_request("a", 6), plain);
  front.submit(text_request("a", 40, {"fg"}), stopped);
  ASSERT_TRUE(wait_until([&] { return ends_of(*plain) == 1 && ends_of(*stopped) == 1; }));
  EXPECT_EQ(plain->text, "bcdefg");
  EXPECT_EQ(plain->result.finish, FinishReason::Length);
  EXPECT_EQ(plain->result.output_tokens, 6);
  EXPECT_EQ(plain->result.weights_version, 5);
  EXPECT_EQ(stopped->text, "bcde");  // the stop itself is never sent
  EXPECT_EQ(stopped->result.finish, FinishReason::Stop);
  EXPECT_EQ(stopped->result.output_tokens, 6);  // b c d e f g
  EXPECT_EQ(stopped->ids.size(), 6u);
  EXPECT_GE(stopped->result.total_s, stopped->result.ttft_s);
  const StatsSnapshot s = front.stats();
  EXPECT_EQ(s.kv_blocks_used, 0);  // the stopped request's blocks went back at once
  EXPECT_EQ(s.active_sequences, 0);
  EXPECT_EQ(s.output_tokens_total, 6 + 6);
  loop.stop();
  EXPECT_EQ(exec.commands.back(), StepCommand::Stop);
}

TEST(EngineFront, RefusesBadRequestsWithTypedErrorsBeforeTheCore) {
  const BpeTokenizer tok = byte_tokenizer();
  EngineFront front(model_info(), &tok, engine_options(), 0);
  auto r = std::make_shared<Recorder>();
  auto kind_of = [&](GenerateRequest req) {
    try {
      front.submit(std::move(req), r);
    } catch (const ServeError& e) {
      return e.kind();
    }
    return ErrorKind::Internal;
  };
  EXPECT_EQ(kind_of(text_request(std::string(100, 'x'), 8)), ErrorKind::InvalidRequest);  // 100 > 56 tokens
  EXPECT_EQ(kind_of(text_request("", 8)), ErrorKind::InvalidRequest);
  GenerateRequest bad_token;
  bad_token.prompt_tokens = {1, 258};
  EXPECT_EQ(kind_of(bad_token), ErrorKind::InvalidRequest);
  GenerateRequest hot = text_request("a", 4);
  hot.temperature = -1.0f;
  EXPECT_EQ(kind_of(hot), ErrorKind::InvalidRequest);
  EXPECT_EQ(front.stats().queue_depth[1], 0);
  front.stop_accepting();
  EXPECT_EQ(kind_of(text_request("a", 4)), ErrorKind::ShuttingDown);
}

TEST(EngineFront, WithAStreamIntervalTheFirstTokenGoesAloneAndTheRestAtTheEnd) {
  const BpeTokenizer tok = byte_tokenizer();
  EngineOptions o = engine_options();
  o.stream_interval_s = 60.0;
  EngineFront front(model_info(), &tok, o, 0);
  FakeExecutor exec(64, 4, alphabet);
  LoopThread loop(front, exec);
  auto r = std::make_shared<Recorder>();
  front.submit(text_request("a", 10), r);
  ASSERT_TRUE(wait_until([&] { return ends_of(*r) == 1; }));
  EXPECT_EQ(r->text, "bcdefghijk");
  ASSERT_GE(r->batches.size(), 2u);
  EXPECT_EQ(r->batches.front(), 1u);
  size_t total = 0;
  for (size_t b : r->batches) total += b;
  EXPECT_EQ(total, 10u);
}

TEST(EngineFront, AStopFailsWhatIsLeftWithShuttingDownAndEndsTheLoop) {
  const BpeTokenizer tok = byte_tokenizer();
  EngineFront front(model_info(), &tok, engine_options(), 0);
  FakeExecutor exec(64, 4, alphabet);
  exec.step_seconds = 0.002;
  std::vector<std::shared_ptr<Recorder>> rs;
  {
    LoopThread loop(front, exec);
    for (int i = 0; i < 6; ++i) {  // 4 run, 2 wait
      rs.push_back(std::make_shared<Recorder>());
      front.submit(text_request("a", 50), rs.back());
    }
    ASSERT_TRUE(wait_until([&] { return exec.steps >= 3; }));
    loop.stop();
  }
  for (auto& r : rs) {
    EXPECT_EQ(r->ends, 1);
    EXPECT_EQ(r->error, ErrorKind::ShuttingDown);
  }
  EXPECT_EQ(front.stats().kv_blocks_used, 0);
  EXPECT_FALSE(front.health().ready);
  EXPECT_EQ(exec.commands.back(), StepCommand::Stop);
}

TEST(EngineWindow, ACapEndsAWindowUnderRealtimeLoadAndTrainingGetsAsMuchTimeAgain) {
  const BpeTokenizer tok = byte_tokenizer();
  EngineOptions o = engine_options();
  o.scheduler.queue_capacity[0] = 64;
  EngineFront front(model_info(), &tok, o, 0);
  FakeExecutor exec(64, 4, alphabet);
  exec.step_seconds = 0.004;
  WindowPacing pacing;
  pacing.max_window_s = 0.03;
  std::vector<std::shared_ptr<Recorder>> rs;
  auto keep_loaded = [&] {  // continuous realtime load: always more than the slots hold
    while (front.stats().queue_depth[0] < 8) {
      GenerateRequest r = text_request("a", 40);
      r.priority = Priority::Realtime;
      rs.push_back(std::make_shared<Recorder>());
      front.submit(r, rs.back());
    }
  };
  WindowRequest w;
  w.refresh = [] {};
  using Clock = std::chrono::steady_clock;
  double serving_s = 0.0, training_s = 0.0, longest = 0.0;
  int windows_with_steps = 0, resting = 0;
  const auto start = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - start).count() < 0.6) {
    keep_loaded();
    const auto t0 = Clock::now();
    const WindowReport rep = run_window(front, exec, w, pacing);
    const double d = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rep.steps > 0) {
      ++windows_with_steps;
      serving_s += d;
      longest = std::max(longest, d);
      EXPECT_TRUE(rep.capped) << "a window ended with realtime work left but not at the cap";
    } else {
      ++resting;
    }
    const auto t1 = Clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a stretch of training
    training_s += std::chrono::duration<double>(Clock::now() - t1).count() + (rep.steps > 0 ? 0.0 : d);
  }
  EXPECT_GE(windows_with_steps, 3);
  EXPECT_GT(resting, 0) << "after a capped window the next ones must let training run";
  EXPECT_EQ(pacing.capped, windows_with_steps);
  // A window stops at the first step boundary past the cap.
  EXPECT_GE(longest, pacing.max_window_s);
  // Training gets as much time again as each capped window took (resume_at), so over the run
  // it has at least the serving time minus the last window.
  EXPECT_GE(training_s, serving_s - longest) << "serving " << serving_s << " s, training " << training_s << " s";
  // Drain ignores the cap and serves everything.
  front.stop_accepting();
  WindowRequest drain = w;
  drain.drain = true;
  drain.batch_budget = 1.0;
  const WindowReport last = run_window(front, exec, drain, pacing);
  EXPECT_FALSE(last.capped);
  for (auto& r : rs) EXPECT_EQ(ends_of(*r), 1);
  EXPECT_EQ(front.stats().kv_blocks_used, 0);
}

TEST(EngineWindow, NewerWeightsCloseAdmissionFinishTheRunningOnesAndRefresh) {
  const BpeTokenizer tok = byte_tokenizer();
  EngineFront front(model_info(), &tok, engine_options(), 1);
  FakeExecutor exec(64, 4, alphabet);
  exec.version = 1;
  WindowPacing pacing;
  auto early = std::make_shared<Recorder>(), late = std::make_shared<Recorder>();
  WindowRequest w;
  w.live_version = 1;
  w.batch_budget = 1.0;
  w.refresh = [&] { exec.version = 2; };
  w.max_steps = 2;
  front.submit(text_request("a", 5), early);
  run_window(front, exec, w, pacing);  // early runs 2 steps on version 1
  front.submit(text_request("a", 5), late);
  w.live_version = 2;
  w.max_steps = 0;
  const WindowReport rep = run_window(front, exec, w, pacing);
  EXPECT_TRUE(rep.refreshed);
  EXPECT_EQ(exec.refreshes, 1);
  ASSERT_EQ(early->ends, 1);
  ASSERT_EQ(late->ends, 1);
  EXPECT_EQ(early->result.weights_version, 1);  // one version per reply
  EXPECT_EQ(late->result.weights_version, 2);
  EXPECT_EQ(front.model_info().weights_version, 2);
}

}  // namespace
}  // namespace tandem::serve
