// EngineCore: the serving state of one replica — requests, the scheduler and its KV blocks,
// the weights version, and the statistics — as a single-threaded object with no mutex, no
// thread and no MPI. It knows token ids only (no text, no streams, no RPC): what happens to a
// request is reported as CoreEvents that the caller takes and hands on.
//
// One engine step, as its drivers run it (serve/serve_loop.h, serve/engine_window.h):
//   plan = core.plan(now)            drops cancelled and expired requests (Failed events for the
//                                    expired), admits queued ones, picks the step's tokens;
//   m    = core.step_message(plan)   what every rank of the replica runs (StepExecutor);
//   core.commit(plan, sampled, now)  appends the sampled tokens: a Token event for each, and a
//                                    Finished event when a request ends (length, end of text,
//                                    context full).
// Between steps: admit() (validated token ids; throws ServeError(Overloaded) when the class's
// queue is full), cancel() (the client went away: no further event), end() (the caller found
// a stop sequence and ends the request itself: no further event), fail_all() (every request
// ends with the error), refreshed() (the serving copy took newer weights: admission reopens).
// Every admitted request gets exactly one terminal event (Finished or Failed) unless it was
// cancelled or ended by the caller. Events come out in order, per request and overall.
// Times are seconds on one steady clock chosen by the caller.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/model/token_sampler.h"
#include "serve/engine_stats.h"
#include "serve/scheduler.h"
#include "serve/serving_api.h"
#include "serve/step_wire.h"

namespace tandem::serve {

struct CoreOptions {
  SchedulerOptions scheduler;
  int32_t vocab = 0;
  int32_t eot_id = -1;     // the end-of-text token (-1: none)
  bool recompute = false;  // reference mode: every step recomputes whole contexts
};

struct CoreRequest {
  std::vector<int32_t> prompt;  // validated token ids
  Priority priority = Priority::Batch;
  int32_t max_tokens = 1;
  double deadline_s = 0.0;  // relative to admission; 0: none
  SamplingParams sampling;
};

struct CoreEvent {
  enum class Kind : uint8_t { Token, Finished, Failed };
  Kind kind = Kind::Token;
  uint64_t id = 0;
  int32_t token = 0;         // Token
  GenerateResult result;     // Finished (finish, counts, times, weights version)
  ErrorKind error = ErrorKind::Internal;  // Failed
  std::string message;                    // Failed
};

class EngineCore {
 public:
  explicit EngineCore(const CoreOptions& opt, int64_t weights_version = 0);

  uint64_t admit(CoreRequest r, double now);
  void cancel(uint64_t id);  // unknown or ended ids are ignored
  void end(uint64_t id);     // ended by the caller (stop sequence); its blocks are freed now
  void fail_all(ErrorKind kind, const std::string& message);

  StepPlan plan(double now);
  StepPlan sweep(double now);  // step 1 of plan() alone: drops, plans nothing
  StepMessage step_message(const StepPlan& plan) const;
  void commit(const StepPlan& plan, const std::vector<int32_t>& sampled, double now);
  std::vector<CoreEvent> take_events();

  // Admission (serving windows close it while the running sequences finish on a kept copy).
  void set_admission(bool open) { sched_.set_admission(open); }
  int64_t queued() const { return sched_.queued(Priority::Realtime) + sched_.queued(Priority::Batch); }
  int64_t queued(Priority p) const { return sched_.queued(p); }
  int64_t running() const { return sched_.running(); }
  int64_t running(Priority p) const { return sched_.running(p); }
  bool has_realtime(const StepPlan& plan) const;
  bool known(uint64_t id) const { return reqs_.count(id) != 0; }

  // Weights and accounting of the serving modes.
  int64_t weights_version() const { return weights_version_; }
  void refreshed(int64_t version);  // the copy now holds `version`; admission reopens
  void set_training_version(int64_t v) { training_version_ = v; }
  void set_weight_syncs(int64_t n) { weight_syncs_ = n; }
  void note_step(double seconds, bool realtime);  // an engine step's wall time
  void note_busy(double seconds) { busy_s_ += seconds; }  // refreshes
  void note_window_opened() { ++windows_opened_; }
  double batch_seconds() const { return batch_s_; }

  // Everything but how requests ended for their clients (counted by the RPC front end).
  void fill_stats(double now, StatsSnapshot& s) const;

 private:
  struct Req {
    Priority priority = Priority::Batch;
    int32_t prompt_tokens = 0, max_tokens = 0, output_tokens = 0;
    double arrival = 0.0, first_token = 0.0, last_token = 0.0, deadline_s = 0.0;
    bool cancelled = false;
  };
  void report_dropped(const StepPlan& plan);
  void finish(uint64_t id, Req& r, FinishReason why, double now);

  CoreOptions opt_;
  Scheduler sched_;
  std::map<uint64_t, Req> reqs_;
  std::vector<CoreEvent> events_;
  EngineStats stats_;
  uint64_t next_id_ = 1;
  int64_t weights_version_ = 0, training_version_ = 0, windows_opened_ = 0, weight_syncs_ = 0;
  double batch_s_ = 0.0;  // seconds of engine steps without a realtime item
  double busy_s_ = 0.0;   // seconds of engine steps and weight refreshes
};

}  // namespace tandem::serve
