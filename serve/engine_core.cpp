// The single-threaded serving state of one replica (contract in engine_core.h).
#include "serve/engine_core.h"

#include <fmt/format.h>

#include <algorithm>

#include "runtime/core/error.h"

namespace tandem::serve {

EngineCore::EngineCore(const CoreOptions& opt, int64_t weights_version)
    : opt_(opt), sched_(opt.scheduler), weights_version_(weights_version) {
  TANDEM_CHECK(opt.vocab > 0, "engine core: vocab {} must be > 0", opt.vocab);
}

uint64_t EngineCore::admit(CoreRequest r, double now) {
  SeqRequest s;
  s.id = next_id_;
  s.priority = r.priority;
  s.max_tokens = r.max_tokens;
  s.arrival = now;
  s.deadline = r.deadline_s > 0 ? now + r.deadline_s : 0.0;
  s.sampling = r.sampling;
  const auto prompt_len = static_cast<int32_t>(r.prompt.size());
  s.prompt = std::move(r.prompt);
  sched_.enqueue(std::move(s));  // throws Overloaded when the class's queue is full
  Req q;
  q.priority = r.priority;
  q.prompt_tokens = prompt_len;
  q.max_tokens = r.max_tokens;
  q.arrival = now;
  q.deadline_s = r.deadline_s;
  reqs_.emplace(next_id_, q);
  return next_id_++;
}

void EngineCore::cancel(uint64_t id) {
  auto f = reqs_.find(id);
  if (f == reqs_.end() || f->second.cancelled) return;
  f->second.cancelled = true;
  sched_.cancel(id);  // blocks freed at the next plan()
}

void EngineCore::end(uint64_t id) {
  auto f = reqs_.find(id);
  if (f == reqs_.end()) return;
  stats_.record_prompt_tokens(f->second.prompt_tokens);
  sched_.cancel(id);  // a queued one leaves its queue at the next plan()
  sched_.finish(id);  // a running one frees its blocks now
  reqs_.erase(f);
}

void EngineCore::fail_all(ErrorKind kind, const std::string& message) {
  for (auto& [id, r] : reqs_) {
    if (!r.cancelled) {
      CoreEvent e;
      e.kind = CoreEvent::Kind::Failed;
      e.id = id;
      e.error = kind;
      e.message = message;
      events_.push_back(std::move(e));
    }
    sched_.cancel(id);
  }
  reqs_.clear();
  sched_.sweep(0.0);  // drops them all and frees their blocks
}

void EngineCore::report_dropped(const StepPlan& plan) {
  for (const auto& [id, why] : plan.dropped) {
    auto f = reqs_.find(id);
    if (f == reqs_.end()) continue;
    if (why != DropReason::Cancelled && !f->second.cancelled) {
      CoreEvent e;
      e.kind = CoreEvent::Kind::Failed;
      e.id = id;
      e.error = ErrorKind::DeadlineExceeded;
      e.message = fmt::format("the deadline of {:.3f} s passed after {} output tokens", f->second.deadline_s,
                              f->second.output_tokens);
      events_.push_back(std::move(e));
    }
    reqs_.erase(f);
  }
}

StepPlan EngineCore::plan(double now) {
  StepPlan p = sched_.plan(now);
  report_dropped(p);
  return p;
}

StepPlan EngineCore::sweep(double now) {
  StepPlan p = sched_.sweep(now);
  report_dropped(p);
  return p;
}

StepMessage EngineCore::step_message(const StepPlan& plan) const {
  StepMessage m;
  m.command = opt_.recompute ? StepCommand::Recompute : StepCommand::Forward;
  if (!opt_.recompute) {
    m.batch = plan.batch(sched_);
    m.sampling = plan.sampling();
    return m;
  }
  // Reference mode: each sequence that samples this step runs its whole context from scratch.
  for (const StepPlan::Item& it : plan.items) {
    if (!it.wants_logits) continue;
    const std::vector<int32_t>& all = sched_.tokens_of(it.id);
    std::vector<int32_t> ctx(all.begin(), all.begin() + it.past + static_cast<int64_t>(it.tokens.size()));
    m.batch.add_sequence(ctx, 0, sched_.blocks_of(it.id), opt_.scheduler.block_tokens, true);
    m.sampling.push_back(it.sampling);
  }
  return m;
}

void EngineCore::finish(uint64_t id, Req& r, FinishReason why, double now) {
  CoreEvent e;
  e.kind = CoreEvent::Kind::Finished;
  e.id = id;
  e.result.finish = why;
  e.result.prompt_tokens = r.prompt_tokens;
  e.result.output_tokens = r.output_tokens;
  e.result.ttft_s = r.first_token - r.arrival;
  e.result.total_s = now - r.arrival;
  e.result.weights_version = weights_version_;
  events_.push_back(std::move(e));
  stats_.record_prompt_tokens(r.prompt_tokens);
  sched_.finish(id);
}

void EngineCore::commit(const StepPlan& plan, const std::vector<int32_t>& sampled, double now) {
  // A request ended by the caller while the step ran has left the scheduler: its items are
  // dropped from a copy of the plan (only then: the usual step commits the plan as it is).
  // A cancelled one stays in the scheduler until the next plan() and reports nothing.
  bool all_running = true;
  for (const StepPlan::Item& it : plan.items) all_running = all_running && sched_.is_running(it.id);
  StepPlan filtered;
  std::vector<int32_t> filtered_sampled;
  if (!all_running) {
    size_t j = 0;
    for (const StepPlan::Item& it : plan.items) {
      const int32_t token = it.wants_logits ? sampled.at(j++) : 0;
      if (!sched_.is_running(it.id)) continue;
      filtered.items.push_back(it);
      if (it.wants_logits) filtered_sampled.push_back(token);
    }
    TANDEM_CHECK(j == sampled.size(), "commit: {} sampled tokens, the plan wanted {}", sampled.size(), j);
  }
  const StepPlan& live = all_running ? plan : filtered;
  const std::vector<int32_t>& live_sampled = all_running ? sampled : filtered_sampled;
  sched_.commit(live, live_sampled);  // checks the token count against the plan
  int64_t emitted = 0;
  size_t k = 0;
  for (const StepPlan::Item& it : live.items) {
    if (!it.wants_logits) continue;
    const int32_t token = live_sampled[k++];
    auto f = reqs_.find(it.id);
    if (f == reqs_.end() || f->second.cancelled) continue;  // freed at the next plan()
    Req& r = f->second;
    ++r.output_tokens;
    ++emitted;
    if (r.output_tokens == 1) {
      r.first_token = now;
      stats_.record_ttft(r.priority, now - r.arrival);
    } else {
      stats_.record_tpot(r.priority, now - r.last_token);
    }
    r.last_token = now;
    CoreEvent e;
    e.kind = CoreEvent::Kind::Token;
    e.id = it.id;
    e.token = token;
    events_.push_back(std::move(e));
    if (token == opt_.eot_id) finish(it.id, r, FinishReason::EndOfText, now);
    else if (r.output_tokens >= r.max_tokens) finish(it.id, r, FinishReason::Length, now);
    else if (r.prompt_tokens + r.output_tokens >= opt_.scheduler.seq_len) finish(it.id, r, FinishReason::ContextFull, now);
    else continue;
    reqs_.erase(f);
  }
  stats_.record_tokens(now, emitted);
}

std::vector<CoreEvent> EngineCore::take_events() {
  std::vector<CoreEvent> out;
  out.swap(events_);
  return out;
}

bool EngineCore::has_realtime(const StepPlan& plan) const {
  for (const StepPlan::Item& it : plan.items) {
    auto f = reqs_.find(it.id);
    if (f != reqs_.end() && f->second.priority == Priority::Realtime) return true;
  }
  return false;
}

void EngineCore::refreshed(int64_t version) {
  weights_version_ = version;
  sched_.set_admission(true);
}

void EngineCore::note_step(double seconds, bool realtime) {
  busy_s_ += seconds;
  if (!realtime) batch_s_ += seconds;
}

void EngineCore::fill_stats(double now, StatsSnapshot& s) const {
  stats_.fill(now, s);
  for (int p = 0; p < kNumPriorities; ++p) s.queue_depth[p] = sched_.queued(static_cast<Priority>(p));
  s.active_sequences = sched_.running();
  s.kv_blocks_used = sched_.pool().used();
  s.kv_blocks_free = sched_.pool().free_count();
  s.kv_blocks_total = sched_.pool().total();
  s.weights_version = weights_version_;
  s.training_version = std::max(training_version_, weights_version_);
  s.windows_opened = windows_opened_;
  s.staleness = s.training_version - s.weights_version;
  s.weight_syncs = weight_syncs_;
  s.busy_s = busy_s_;
}

}  // namespace tandem::serve
