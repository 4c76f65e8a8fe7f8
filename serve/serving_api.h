// The contract between the RPC front end (serve/rpc_server.*) and the engine that computes
// replies (serve/engine.*), in plain C++: nothing here knows Cap'n Proto or MPI.
//
// Threading:
//   - ServingBackend is called on the RPC (KJ event loop) thread. Every method is thread-safe
//     and returns quickly: submit() validates and enqueues, it never runs the model.
//   - GenerateStream is called on the engine thread. An implementation hands the event to its
//     own thread (the RPC side queues it for the KJ loop) and returns at once; it never calls
//     back into the backend from inside a callback.
//   - After cancel(id), the engine frees the sequence's KV blocks at its next step and sends no
//     further events for it (an event already handed over may still arrive; drop it).
// Errors: submit() throws ServeError for a request it refuses (InvalidRequest, Overloaded,
// ShuttingDown). A request that fails later (DeadlineExceeded while queued, ShuttingDown, an
// internal error) ends with GenerateStream::failed. Exactly one of finished()/failed() ends
// every stream that was not cancelled.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::serve {

enum class Priority : uint8_t { Realtime = 0, Batch = 1 };
constexpr int kNumPriorities = 2;
const char* priority_name(Priority p);  // "realtime" | "batch"

enum class ErrorKind : uint8_t {
  InvalidRequest = 0,    // the request itself is wrong; do not retry it unchanged
  Overloaded = 1,        // the class's queue is full; retry after retry_after_s
  DeadlineExceeded = 2,  // the deadline passed before the reply could start/finish
  ShuttingDown = 3,      // the server is stopping; go to another replica
  Internal = 4,          // a bug or a failed rank; the message says which
};
const char* error_kind_name(ErrorKind k);  // "invalid_request", "overloaded", ...

class ServeError : public std::runtime_error {
 public:
  ServeError(ErrorKind kind, const std::string& msg, double retry_after_s = 0.0)
      : std::runtime_error(msg), kind_(kind), retry_after_s_(retry_after_s) {}
  ErrorKind kind() const { return kind_; }
  double retry_after_s() const { return retry_after_s_; }

 private:
  ErrorKind kind_;
  double retry_after_s_;
};

enum class FinishReason : uint8_t {
  Length = 0,     // max_tokens generated
  Stop = 1,       // a stop sequence matched (the text up to it was streamed, not the stop)
  EndOfText = 2,  // the model emitted <|endoftext|>
  ContextFull = 3 // prompt + output reached model.seq_len
};
const char* finish_reason_name(FinishReason r);

struct GenerateRequest {
  std::string prompt_text;             // used when prompt_tokens is empty
  std::vector<int32_t> prompt_tokens;  // token ids; takes precedence over prompt_text
  int32_t max_tokens = 16;             // >= 1
  float temperature = 0.0f;            // 0: greedy; else > 0
  int32_t top_k = 0;                   // 0: off; else >= 1
  float top_p = 1.0f;                  // (0, 1]; 1: off
  uint64_t seed = 0;                   // per-request sampling seed
  std::vector<std::string> stop;       // stop sequences (non-empty strings, at most 8)
  Priority priority = Priority::Batch;
  double deadline_s = 0.0;             // 0: none; else seconds after arrival for the whole reply
};

struct TokenPiece {
  int32_t id = 0;
  std::string text;  // the text this token completes (may be empty mid UTF-8 character)
};

struct GenerateResult {
  FinishReason finish = FinishReason::Length;
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;
  double ttft_s = 0.0;           // arrival -> first token handed to the stream
  double total_s = 0.0;          // arrival -> finish
  int64_t weights_version = 0;   // optimizer step of the weights that computed all of it
  int32_t replica = 0;           // the data-parallel replica that served it (set by the router)
};

class GenerateStream {
 public:
  virtual ~GenerateStream() = default;
  virtual void tokens(std::vector<TokenPiece> pieces) = 0;
  virtual void finished(const GenerateResult& result) = 0;
  virtual void failed(const ServeError& error) = 0;
};

struct HealthInfo {
  bool live = true;    // the process and its event loop run
  bool ready = false;  // weights loaded and the engine accepts requests
  std::string detail;
};

struct LatencySummary {
  double p50 = 0, p90 = 0, p99 = 0;  // seconds
  int64_t count = 0;
};

struct StatsSnapshot {
  int64_t queue_depth[kNumPriorities] = {0, 0};
  int64_t active_sequences = 0;
  int64_t kv_blocks_used = 0, kv_blocks_free = 0, kv_blocks_total = 0;
  LatencySummary ttft[kNumPriorities];  // per class
  LatencySummary tpot[kNumPriorities];  // time per output token after the first, per class
  double tokens_per_s = 0.0;            // output tokens per second over the recent window
  int64_t weights_version = 0;
  int64_t requests_finished = 0, requests_cancelled = 0;
  int64_t rejected[5] = {0, 0, 0, 0, 0};  // indexed by ErrorKind
  int64_t prompt_tokens_total = 0, output_tokens_total = 0;
  std::vector<StatsSnapshot> replicas;  // dp > 1 (the router): each replica's own; else empty
  int64_t training_version = 0;  // serving while training: the trainers' step; else = weights_version
  int64_t windows_opened = 0;    // serve.mode windows: safe points at which the engine stepped
  int64_t staleness = 0;         // training_version - weights_version (versions behind the trainers)
  int64_t weight_syncs = 0;      // serve.mode dedicated: weight versions received from the trainers
  double busy_s = 0.0;           // seconds the engine spent in steps and weight refreshes
};

struct ModelInfo {
  std::string name;  // e.g. "gpt2-124M" or the config file stem
  int32_t layers = 0, dim = 0, heads = 0, vocab = 0, seq_len = 0;
  int32_t dp = 1, tp = 1, pp = 1;  // the serving layout
  std::string layout;              // Mesh::describe() of the leader
  int32_t kv_block_tokens = 0, kv_blocks = 0;  // per replica
  int64_t weights_version = 0;
};

class ServingBackend {
 public:
  virtual ~ServingBackend() = default;
  // Validates and enqueues; returns the request id. Throws ServeError when refused.
  virtual uint64_t submit(GenerateRequest req, std::shared_ptr<GenerateStream> stream) = 0;
  virtual void cancel(uint64_t id) = 0;
  virtual HealthInfo health() = 0;
  virtual StatsSnapshot stats() = 0;
  virtual ModelInfo model_info() = 0;
};

}  // namespace tandem::serve
