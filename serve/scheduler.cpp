// Admission and continuous batching (contract in scheduler.h).
#include "serve/scheduler.h"

#include <algorithm>

#include "runtime/core/error.h"

namespace tandem::serve {

Scheduler::Scheduler(const SchedulerOptions& o) : opt_(o), pool_(o.kv_blocks) {
  TANDEM_CHECK(o.block_tokens >= 1 && o.max_seqs >= 1 && o.max_batch_tokens >= o.max_seqs &&
                   o.prefill_chunk >= 1,
               "scheduler: block_tokens {}, max_seqs {}, max_batch_tokens {} (>= max_seqs), "
               "prefill_chunk {}",
               o.block_tokens, o.max_seqs, o.max_batch_tokens, o.prefill_chunk);
}

int32_t Scheduler::blocks_for(const SeqRequest& r) const {
  const int32_t tokens = static_cast<int32_t>(r.prompt.size()) + r.max_tokens;
  return (std::min(tokens, opt_.seq_len) + opt_.block_tokens - 1) / opt_.block_tokens;
}

void Scheduler::enqueue(SeqRequest r) {
  const int c = static_cast<int>(r.priority);
  auto& q = queue_[c];
  if (static_cast<int32_t>(q.size()) >= opt_.queue_capacity[c]) {
    // A hint: the time the running sequences need to make room, at a few ms per token.
    const double retry = 0.05 + 0.01 * static_cast<double>(q.size());
    throw ServeError(ErrorKind::Overloaded,
                     fmt::format("the {} queue is full ({} of {} requests waiting)",
                                 priority_name(r.priority), q.size(), opt_.queue_capacity[c]),
                     retry);
  }
  TANDEM_CHECK(blocks_for(r) <= pool_.total(),
               "request {} needs {} KV blocks, the pool has {}", r.id, blocks_for(r), pool_.total());
  q.push_back(std::move(r));
}

void Scheduler::cancel(uint64_t id) { cancels_.push_back(id); }

void Scheduler::drop_expired(double now, StepPlan& plan) {
  std::sort(cancels_.begin(), cancels_.end());
  auto reason = [&](const SeqRequest& r, DropReason* why) {
    if (std::binary_search(cancels_.begin(), cancels_.end(), r.id)) {
      *why = DropReason::Cancelled;
      return true;
    }
    if (r.deadline > 0.0 && now > r.deadline) {
      *why = DropReason::DeadlineExceeded;
      return true;
    }
    return false;
  };
  DropReason why{};
  for (auto& q : queue_)
    for (auto it = q.begin(); it != q.end();) {
      if (reason(*it, &why)) {
        plan.dropped.emplace_back(it->id, why);
        it = q.erase(it);
      } else {
        ++it;
      }
    }
  for (auto it = order_.begin(); it != order_.end();) {
    Seq& s = running_.at(*it);
    if (reason(s.req, &why)) {
      plan.dropped.emplace_back(*it, why);
      pool_.release(s.blocks);
      running_.erase(*it);
      it = order_.erase(it);
    } else {
      ++it;
    }
  }
  cancels_.clear();
}

StepPlan Scheduler::plan(double now) {
  StepPlan plan;
  drop_expired(now, plan);
  int32_t budget = opt_.max_batch_tokens;
  // Running sequences, realtime first (stable: admission order within a class).
  std::vector<uint64_t> ids = order_;
  std::stable_sort(ids.begin(), ids.end(), [&](uint64_t a, uint64_t b) {
    return running_.at(a).req.priority < running_.at(b).req.priority;
  });
  auto add = [&](Seq& s, int32_t limit) {
    const int32_t left = static_cast<int32_t>(s.tokens.size()) - s.cached;
    const int32_t n = std::min(left, limit);
    if (n <= 0) return;
    StepPlan::Item it;
    it.id = s.req.id;
    it.past = s.cached;
    it.tokens.assign(s.tokens.begin() + s.cached, s.tokens.begin() + s.cached + n);
    it.wants_logits = s.cached + n == static_cast<int32_t>(s.tokens.size());
    it.sampling = s.req.sampling;
    it.sampling.step = static_cast<int64_t>(s.tokens.size() - s.req.prompt.size());
    plan.items.push_back(std::move(it));
    budget -= n;
  };
  auto decoding = [&](const Seq& s) {
    return s.cached >= static_cast<int32_t>(s.req.prompt.size());
  };
  for (uint64_t id : ids)  // decodes: one token each (max_batch_tokens >= max_seqs)
    if (decoding(running_.at(id))) add(running_.at(id), 1);
  for (uint64_t id : ids)  // prefill chunks
    if (!decoding(running_.at(id)) && budget > 0)
      add(running_.at(id), std::min(budget, opt_.prefill_chunk));
  // Admission, realtime first; a request waiting for blocks holds back the ones behind it.
  for (auto& q : queue_) {
    if (!admission_open_) break;
    while (!q.empty() && static_cast<int32_t>(running_.size()) < opt_.max_seqs && budget > 0) {
      Seq s;
      if (!pool_.allocate(blocks_for(q.front()), s.blocks)) break;
      s.req = std::move(q.front());
      q.pop_front();
      s.tokens = s.req.prompt;
      const uint64_t id = s.req.id;
      order_.push_back(id);
      Seq& placed = running_.emplace(id, std::move(s)).first->second;
      add(placed, std::min(budget, opt_.prefill_chunk));
    }
    if (!q.empty() && static_cast<int32_t>(running_.size()) < opt_.max_seqs && budget > 0) break;
  }
  return plan;
}

StepPlan Scheduler::sweep(double now) {
  StepPlan plan;
  drop_expired(now, plan);
  return plan;
}

int64_t Scheduler::running(Priority p) const {
  int64_t n = 0;
  for (const auto& [id, s] : running_) n += s.req.priority == p;
  return n;
}

void Scheduler::commit(const StepPlan& plan, const std::vector<int32_t>& sampled) {
  size_t k = 0;
  for (const StepPlan::Item& it : plan.items) {
    auto f = running_.find(it.id);
    TANDEM_CHECK(f != running_.end(), "commit: sequence {} is not running", it.id);
    f->second.cached = it.past + static_cast<int32_t>(it.tokens.size());
    if (!it.wants_logits) continue;
    TANDEM_CHECK(k < sampled.size(), "commit: {} sampled tokens for a plan that wants more",
                 sampled.size());
    f->second.tokens.push_back(sampled[k++]);
  }
  TANDEM_CHECK(k == sampled.size(), "commit: {} sampled tokens, the plan wanted {}",
               sampled.size(), k);
}

void Scheduler::finish(uint64_t id) {
  auto f = running_.find(id);
  if (f == running_.end()) return;
  pool_.release(f->second.blocks);
  running_.erase(f);
  order_.erase(std::find(order_.begin(), order_.end(), id));
}

const std::vector<int32_t>& Scheduler::blocks_of(uint64_t id) const {
  auto f = running_.find(id);
  TANDEM_CHECK(f != running_.end(), "sequence {} is not running", id);
  return f->second.blocks;
}

const std::vector<int32_t>& Scheduler::tokens_of(uint64_t id) const {
  auto f = running_.find(id);
  TANDEM_CHECK(f != running_.end(), "sequence {} is not running", id);
  return f->second.tokens;
}

InferBatch StepPlan::batch(const Scheduler& s) const {
  InferBatch b;
  for (const Item& it : items)
    b.add_sequence(it.tokens, it.past, s.blocks_of(it.id), s.options().block_tokens,
                   it.wants_logits);
  return b;
}

std::vector<SamplingParams> StepPlan::sampling() const {
  std::vector<SamplingParams> out;
  for (const Item& it : items)
    if (it.wants_logits) out.push_back(it.sampling);
  return out;
}

}  // namespace tandem::serve
