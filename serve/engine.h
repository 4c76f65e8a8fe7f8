// Engine: the serving loop of one replica — the ServingBackend the RPC front end calls, the
// scheduler, the streams, and the statistics — driving ReplicaExecutor steps.
//
// Threads: run() is called on every rank's main thread (the only thread that calls MPI:
// MPI stays FUNNELED). On the leader it loops: take admitted work from the scheduler, broadcast
// the step, run it, hand tokens to the streams; when idle it broadcasts a heartbeat every
// idle_heartbeat_s so followers' watchdogs stay quiet. On followers it only receives and runs
// steps. ServingBackend methods are called on the RPC thread and only touch state behind the
// engine's mutex (they never run the model).
// Stopping: request_stop() (any thread) makes the leader refuse new requests (ShuttingDown),
// fail queued and running ones with ShuttingDown, broadcast Stop, and return; followers return
// when they receive Stop.
// Validation in submit(): empty prompt, token id outside [0, vocab), prompt + max_tokens >
// seq_len, max_tokens < 1, temperature < 0 or not finite, top_k < 0, top_p outside (0, 1],
// more than 8 stop sequences or an empty/over-long one, a negative deadline: InvalidRequest.
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
};

class Engine : public ServingBackend {
 public:
  // tokenizer: needed on the leader (text prompts, text pieces); may be null on followers.
  Engine(ReplicaExecutor& exec, const BpeTokenizer* tokenizer, const EngineOptions& opt);
  ~Engine() override;

  void run();
  void request_stop();

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
  };
  void run_leader();
  void run_follower();
  double now() const;
  std::vector<int32_t> validate(const GenerateRequest& req) const;
  StepMessage build_step(const StepPlan& plan);
  void deliver(const StepPlan& plan, const std::vector<int32_t>& sampled);
  void fail_all(const ServeError& err);

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
  bool running_ = false;
  int64_t weights_version_ = 0;
};

}  // namespace tandem::serve
