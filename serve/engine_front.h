// EngineFront: the threaded side of one replica's engine — the ServingBackend that the RPC
// server calls, the lock around the single-threaded EngineCore (serve/engine_core.h), the
// requests' streams, and the RPC server itself.
//
// Threads. submit() runs on the RPC server's preparation worker: it validates and tokenizes
// outside the lock, then admits under it. cancel(), health(), stats(), model_info() run on the
// RPC loop and hold the lock only for O(1)-ish work. The drivers (serve/serve_loop.h,
// serve/engine_window.h) run on the main thread: they call the core under the lock through
// with_core(), run the step outside it, and then call dispatch(), which takes the core's
// events under the lock and detokenizes them and calls the streams outside it.
// Streaming: token ids become text through a TextStream per request (stop sequences, UTF-8
// boundaries); a stop sequence ends the request here (core.end: its blocks are freed at once).
// With stream_interval_s > 0 a request's pieces go out at most that often (the first and the
// last at once; flush_held() sends what is held: at a window's end and when the engine idles).
// Validation in submit(): empty prompt, token id outside [0, vocab), prompt + max_tokens >
// seq_len, max_tokens < 1, temperature < 0 or not finite, top_k outside [0, vocab], top_p
// outside (0, 1], more than 8 stop sequences or an empty/over-long one, a negative deadline, an
// unknown priority: InvalidRequest. A text prompt is tokenized only as far as it could fit
// (BpeTokenizer::encode_bounded). A temperature below kMinSamplingTemperature is served greedy.
// Teardown by construction: the RPC server is a member of the front, stopped and destroyed
// first (its loop's last calls still reach a live core), then the streams, then the core.
// Callers construct the front after the executor and tokenizer it uses, so it dies before them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/data/bpe_tokenizer.h"
#include "serve/engine_core.h"
#include "serve/rpc_server.h"
#include "serve/serving_api.h"
#include "serve/text_stream.h"

namespace tandem::serve {

struct EngineOptions {
  SchedulerOptions scheduler;
  bool recompute = false;          // reference mode: every step recomputes whole contexts
  double idle_heartbeat_s = 0.02;  // leader: the longest wait between broadcasts when idle
  std::function<bool()> stop_requested;  // polled by the drivers each step (e.g. a signal flag)
  double stream_interval_s = 0.0;  // a request's streamed tokens go out at most this often
};

class EngineFront : public ServingBackend {
 public:
  // info: the model and layout (modelInfo); tokenizer: needed on the leader, may be null on
  // followers (they never see a request).
  EngineFront(const ModelInfo& info, const BpeTokenizer* tokenizer, const EngineOptions& opt,
              int64_t weights_version);
  ~EngineFront() override;
  EngineFront(const EngineFront&) = delete;
  EngineFront& operator=(const EngineFront&) = delete;

  // The RPC server on this engine (the replica's leader only); stop_rpc() is idempotent.
  void start_rpc(RpcServerOptions options);
  void stop_rpc();
  int port() const;
  int metrics_port() const;

  // ServingBackend (RPC threads).
  uint64_t submit(GenerateRequest req, std::shared_ptr<GenerateStream> stream) override;
  void cancel(uint64_t id) override;
  HealthInfo health() override;
  StatsSnapshot stats() override;
  ModelInfo model_info() override;

  // Drivers (the main thread).
  template <class F>
  decltype(auto) with_core(F&& f) {
    std::lock_guard<std::mutex> lock(mu_);
    return f(core_);
  }
  void dispatch();    // the core's events to the streams (detokenized outside the lock)
  void flush_held();  // pieces held back by stream_interval_s go out now
  double now() const;
  void set_ready(bool ready);
  void request_stop();  // any thread
  bool stop_requested() const;  // request_stop() or options.stop_requested()
  void stop_accepting();        // new submissions get ShuttingDown (before a drain)
  // Returns once a request is queued, a stop is requested, or `seconds` have passed.
  void wait_for_work(double seconds);
  const EngineOptions& options() const { return opt_; }

 private:
  struct Entry {
    std::shared_ptr<GenerateStream> stream;
    std::unique_ptr<TextStream> text;
    int32_t prompt_tokens = 0, output_tokens = 0;
    double arrival = 0.0, first_token = 0.0, last_sent = 0.0;
    bool ended = false;                   // finished, failed or stopped (driver thread)
    std::atomic<bool> cancelled{false};   // the client went away (RPC thread)
    std::vector<TokenPiece> held;         // not yet handed to the stream
  };
  std::vector<int32_t> validate(const GenerateRequest& req) const;
  void send_held(Entry& e, double t);

  ModelInfo info_;
  const BpeTokenizer* tok_;
  EngineOptions opt_;
  std::chrono::steady_clock::time_point t0_;

  mutable std::mutex mu_;  // guards core_, entries_, ready_
  std::condition_variable work_;
  EngineCore core_;
  std::map<uint64_t, std::shared_ptr<Entry>> entries_;
  bool ready_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<bool> accepting_{true};

  std::unique_ptr<RpcServer> server_;  // last: destroyed first
};

}  // namespace tandem::serve
