// Engine: the serving loop of one replica — the ServingBackend the RPC front end calls, the
// scheduler, the streams, and the statistics — driving ReplicaExecutor steps.
//
// Threads: run() is called on every rank's main thread (the only thread that calls MPI:
// MPI stays FUNNELED). On the leader it loops: take admitted work from the scheduler, broadcast
// the step, run it, hand tokens to the streams; when idle it broadcasts a heartbeat every
// idle_heartbeat_s so followers' watchdogs stay quiet. On followers it only receives and runs
// steps. ServingBackend methods are called on the RPC thread and only touch state behind the
// engine's mutex (they never run the model).
// Streaming: each sampled token goes to its stream at once, or with stream_interval_s > 0 at
// most that often per sequence (the first token and the last always at once; what is held is
// sent when a window ends, when the engine goes idle, and before a failure).
// Stopping: request_stop() (any thread) makes the leader refuse new requests (ShuttingDown),
// fail queued and running ones with ShuttingDown, broadcast Stop, and return; followers return
// when they receive Stop.
// Validation in submit() (on the caller's thread, outside the engine's lock): empty prompt,
// token id outside [0, vocab), prompt + max_tokens > seq_len, max_tokens < 1, temperature < 0
// or not finite, top_k < 0, top_p outside (0, 1], more than 8 stop sequences or an
// empty/over-long one, a negative deadline: InvalidRequest. A text prompt is tokenized only as
// far as it could fit (BpeTokenizer::encode_bounded), so its cost is bounded by the context.
// A temperature below kMinSamplingTemperature (1e-6) is served greedy.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/data/bpe_tokenizer.h"
#include "serve/engine_stats.h"
#include "serve/replica_executor.h"
#include "serve/scheduler.h"
#include "serve/serving_api.h"
#include "serve/text_stream.h"

namespace tandem::serve {

struct EngineOptions {
  SchedulerOptions scheduler;
  bool recompute = false;          // reference mode: every step recomputes whole contexts
  std::string model_name = "tandem";
  double idle_heartbeat_s = 0.02;  // leader: the longest wait between broadcasts when idle
  std::function<bool()> stop_requested;  // polled by the leader each step (e.g. a signal flag)
  double stream_interval_s = 0.0;  // a sequence's streamed tokens go out at most this often (0:
                                   // every token); the first and last at once, and whatever is
                                   // held when a window ends or the engine goes idle
};

// One serving window (serve.mode windows, driven by serve/serving_windows.h at the trainer's
// safe points).
struct WindowRequest {
  int64_t live_version = 0;       // the weights version the training replica holds now
  std::function<void()> refresh;  // copies the training weights into the serving copy and
                                  // sets its version (called on every rank together)
  double batch_budget = 0.25;     // batch-only serving's share of wall time since start
  bool drain = false;             // end of run: serve everything admitted and queued
  bool eager_refresh = false;     // refresh as soon as no sequence runs, even with nothing
                                  // waiting (dedicated servers: the copy costs training nothing)
  int64_t training_version = -1;  // the trainers' version for stats (-1: live_version)
  int64_t weight_syncs = -1;      // weight versions received so far, for stats (-1: unchanged)
  int max_steps = 0;              // end the window after this many engine steps (0: when
                                  // nothing is left), so a caller whose live version changes
                                  // during the window (dedicated servers) looks again
};
struct WindowReport {
  int steps = 0;           // engine steps run in the window
  bool refreshed = false;  // the serving copy took the training weights
};

class Engine : public ServingBackend {
 public:
  // tokenizer: needed on the leader (text prompts, text pieces); may be null on followers.
  Engine(ReplicaExecutor& exec, const BpeTokenizer* tokenizer, const EngineOptions& opt);
  ~Engine() override;

  void run();
  void request_stop();

  // Serving windows. begin_windows() marks the engine ready before the first window.
  // window() is called on every rank of the replica at the same safe point. The leader
  // decides and broadcasts each move, so all ranks enter and leave together:
  //  - when the training weights are newer than the serving copy, admission closes; the
  //    running sequences finish on the kept copy (one version per reply), and once none runs
  //    the copy refreshes (Refresh) and admission reopens;
  //  - engine steps run while realtime work is queued or running, and while any work is
  //    there and batch-only steps have used less than batch_budget of the wall time (drain:
  //    until nothing is left);
  //  - EndWindow closes the window. Followers run what they receive until then.
  // Cancelled and expired requests are dropped at every window, even an empty one.
  // stop_accepting(): new submissions are refused with ShuttingDown (before a drain).
  void begin_windows();
  WindowReport window(const WindowRequest& w);
  void stop_accepting();
  // Leader: returns once a request is queued, a stop is requested, or `seconds` have passed
  // (the dedicated server's idle wait between windows).
  void wait_for_work(double seconds);

  uint64_t submit(GenerateRequest req, std::shared_ptr<GenerateStream> stream) override;
  void cancel(uint64_t id) override;
  HealthInfo health() override;
  StatsSnapshot stats() override;
  ModelInfo model_info() override;

 private:
  struct Active {
    std::shared_ptr<GenerateStream> stream;
    std::unique_ptr<TextStream> text;
    Priority priority = Priority::Batch;
    int32_t prompt_tokens = 0, max_tokens = 0, output_tokens = 0;
    double arrival = 0.0, first_token = 0.0, last_token = 0.0, deadline_s = 0.0;
    bool cancelled = false;
    std::vector<TokenPiece> held;  // sampled, not yet handed to the stream (stream_interval_s)
    double last_sent = 0.0;
  };
  void run_leader();
  void run_follower();
  double now() const;
  std::vector<int32_t> validate(const GenerateRequest& req) const;
  StepMessage build_step(const StepPlan& plan);
  void deliver(const StepPlan& plan, const std::vector<int32_t>& sampled);
  void send_held(Active& a, double t);  // with mu_ held
  void send_all_held();                 // with mu_ held
  void fail_all(const ServeError& err);
  void report_dropped(const StepPlan& plan);  // with mu_ held
  bool has_realtime_item(const StepPlan& plan) const;  // with mu_ held
  WindowReport follow_window(const WindowRequest& w);

  ReplicaExecutor& exec_;
  const BpeTokenizer* tok_;
  EngineOptions opt_;
  ModelInfo info_;
  std::chrono::steady_clock::time_point t0_;

  std::mutex mu_;                // guards everything below
  std::condition_variable work_;
  Scheduler sched_;
  std::map<uint64_t, Active> active_;
  EngineStats stats_;
  uint64_t next_id_ = 1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> accepting_{true};
  bool running_ = false;
  double batch_s_ = 0.0;  // windows: seconds of engine steps without a realtime item
  double busy_s_ = 0.0;   // seconds of engine steps and weight refreshes
  int64_t training_version_ = 0, windows_opened_ = 0, weight_syncs_ = 0;
  int64_t weights_version_ = 0;
};

}  // namespace tandem::serve
