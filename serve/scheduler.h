// Scheduler: admission and continuous batching for one serving replica (leader side, no model).
//
// Each engine step asks plan() which new tokens of which sequences run next:
//   1. cancelled sequences and those past their deadline leave (queued or running); their KV
//      blocks return to the pool and they are reported in StepPlan::dropped;
//   2. every running sequence that is decoding contributes its one new token (realtime first);
//   3. sequences still prefilling contribute their next prompt chunk (at most prefill_chunk
//      tokens, realtime first), within max_batch_tokens;
//   4. queued requests are admitted, realtime before batch, while fewer than max_seqs run,
//      the token budget lasts and the pool holds blocks for prompt + max_tokens (reserved at
//      admission, so a running sequence never waits for memory); an admitted sequence may
//      start its prefill in the same step.
// Long prompts therefore never stall running decodes: they advance a chunk per step beside
// them. enqueue() refuses with ServeError(Overloaded, retry-after) when the class's bounded
// queue is full. commit() appends each sampled token; finish() ends a sequence (the engine
// decides when: length, end of text, stop sequence, context full).
//
// Contract: single-threaded (owned by serve/engine_core.h). Times are seconds on
// one steady clock chosen by the caller.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "runtime/model/kv_cache.h"
#include "runtime/model/token_sampler.h"
#include "serve/kv_block_pool.h"
#include "serve/serving_api.h"

namespace tandem::serve {

struct SchedulerOptions {
  int32_t kv_blocks = 256;
  int32_t block_tokens = 16;
  int32_t max_seqs = 16;           // sequences running at once
  int32_t max_batch_tokens = 256;  // new tokens per step (decode + prefill)
  int32_t prefill_chunk = 128;     // prompt tokens per sequence per step
  int32_t queue_capacity[kNumPriorities] = {64, 256};
  int32_t seq_len = 1024;          // the model's context
};

struct SeqRequest {
  uint64_t id = 0;
  Priority priority = Priority::Batch;
  std::vector<int32_t> prompt;
  int32_t max_tokens = 1;
  double arrival = 0.0;
  double deadline = 0.0;  // absolute; 0: none
  SamplingParams sampling;
};

enum class DropReason : uint8_t { Cancelled, DeadlineExceeded };

struct StepPlan {
  struct Item {
    uint64_t id = 0;
    int32_t past = 0;            // tokens already cached
    std::vector<int32_t> tokens; // new tokens this step
    bool wants_logits = false;   // the last new token's successor is sampled
    SamplingParams sampling;     // step = index of the token to be drawn
  };
  std::vector<Item> items;
  std::vector<std::pair<uint64_t, DropReason>> dropped;
  bool empty() const { return items.empty(); }
  // The model's view of the plan (sequence order = item order).
  InferBatch batch(const class Scheduler& s) const;
  std::vector<SamplingParams> sampling() const;  // one per wants_logits item, in order
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& o);
  void enqueue(SeqRequest r);  // throws ServeError(Overloaded) when the class's queue is full
  void cancel(uint64_t id);    // takes effect at the next plan(); unknown ids are ignored
  StepPlan plan(double now);
  // Step 1 of plan() alone: drops cancelled and expired sequences, plans nothing to run.
  StepPlan sweep(double now);
  // sampled[i] is the token drawn for the i-th wants_logits item of `plan`.
  void commit(const StepPlan& plan, const std::vector<int32_t>& sampled);
  void finish(uint64_t id);  // frees the sequence's blocks
  // Closed admission: plan() runs the sequences already admitted and leaves the queues alone
  // (serving windows close it while the running sequences finish on a kept weights copy).
  void set_admission(bool open) { admission_open_ = open; }
  bool admission_open() const { return admission_open_; }

  int64_t queued(Priority p) const { return static_cast<int64_t>(queue_[static_cast<int>(p)].size()); }
  int64_t running() const { return static_cast<int64_t>(running_.size()); }
  int64_t running(Priority p) const;
  bool is_running(uint64_t id) const { return running_.count(id) != 0; }
  const KvBlockPool& pool() const { return pool_; }
  const SchedulerOptions& options() const { return opt_; }
  const std::vector<int32_t>& blocks_of(uint64_t id) const;
  // Tokens of a running sequence (prompt + generated so far).
  const std::vector<int32_t>& tokens_of(uint64_t id) const;

 private:
  struct Seq {
    SeqRequest req;
    std::vector<int32_t> tokens;  // prompt + generated
    int32_t cached = 0;           // tokens whose K/V are in the cache
    std::vector<int32_t> blocks;
  };
  int32_t blocks_for(const SeqRequest& r) const;
  void drop_expired(double now, StepPlan& plan);

  SchedulerOptions opt_;
  KvBlockPool pool_;
  std::deque<SeqRequest> queue_[kNumPriorities];
  std::map<uint64_t, Seq> running_;
  std::vector<uint64_t> order_;  // running ids: admission order
  std::vector<uint64_t> cancels_;
  bool admission_open_ = true;
};

}  // namespace tandem::serve
