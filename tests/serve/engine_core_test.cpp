// EngineCore (serve/engine_core.h) driven step by step with a fake executor whose output
// depends on the whole context read back from its simulated KV cache: admission, step plans,
// cancellation, ending by the caller, deadlines, refresh, failure of all, and statistics.
#include <gtest/gtest.h>

#include <map>

#include "serve/engine_core.h"
#include "tests/serve/fake_executor.h"

namespace tandem::serve {
namespace {

using testing::alone;
using testing::FakeExecutor;
using testing::hash_model;

constexpr int32_t kVocab = 101;
constexpr int32_t kEot = 100;

int32_t model(const std::vector<int32_t>& ctx) { return hash_model(ctx, kVocab - 1); }  // never EOT

CoreOptions options(int32_t blocks = 32, int32_t max_seqs = 4, int32_t max_batch = 64, int32_t chunk = 16) {
  CoreOptions o;
  o.scheduler.kv_blocks = blocks;
  o.scheduler.block_tokens = 4;
  o.scheduler.max_seqs = max_seqs;
  o.scheduler.max_batch_tokens = max_batch;
  o.scheduler.prefill_chunk = chunk;
  o.scheduler.queue_capacity[0] = 4;
  o.scheduler.queue_capacity[1] = 8;
  o.scheduler.seq_len = 64;
  o.vocab = kVocab;
  o.eot_id = kEot;
  return o;
}

CoreRequest request(std::vector<int32_t> prompt, int32_t max_tokens, Priority p = Priority::Batch) {
  CoreRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.priority = p;
  return r;
}

std::vector<int32_t> prompt_of(int n, int32_t seed) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((seed * 7 + i * 13) % (kVocab - 1));
  return p;
}

// Runs steps until nothing is planned; collects every event.
struct Driver {
  EngineCore& core;
  FakeExecutor& exec;
  double t = 0.0;
  std::vector<CoreEvent> events;
  int steps = 0;
  Driver(EngineCore& c, FakeExecutor& e) : core(c), exec(e) {}

  bool step() {
    t += 0.001;
    StepPlan plan = core.plan(t);
    take();
    if (plan.empty()) return false;
    StepMessage m = core.step_message(plan);
    core.commit(plan, exec.run(m), t);
    take();
    ++steps;
    return true;
  }
  void run() {
    while (step()) {
    }
  }
  void take() {
    for (CoreEvent& e : core.take_events()) events.push_back(std::move(e));
  }
  std::vector<int32_t> tokens_of(uint64_t id) const {
    std::vector<int32_t> out;
    for (const CoreEvent& e : events)
      if (e.id == id && e.kind == CoreEvent::Kind::Token) out.push_back(e.token);
    return out;
  }
  const CoreEvent* terminal(uint64_t id) const {
    const CoreEvent* found = nullptr;
    for (const CoreEvent& e : events)
      if (e.id == id && e.kind != CoreEvent::Kind::Token) {
        EXPECT_EQ(found, nullptr) << "two terminal events for request " << id;
        found = &e;
      }
    return found;
  }
};

StatsSnapshot stats_of(const EngineCore& c, double t = 1.0) {
  StatsSnapshot s;
  c.fill_stats(t, s);
  return s;
}

TEST(EngineCore, ConcurrentRequestsGetExactlyTheirAloneTokensThenOneFinish) {
  EngineCore core(options(), 7);
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  std::map<uint64_t, std::pair<std::vector<int32_t>, int>> want;
  for (int i = 0; i < 6; ++i) {  // 6 requests, 4 slots: two wait for a slot
    const std::vector<int32_t> p = prompt_of(3 + 5 * i, i + 1);
    const int n = 2 + i;
    const uint64_t id = core.admit(request(p, n), 0.0);
    want[id] = {alone(model, p, n), static_cast<int>(p.size())};
  }
  d.run();
  for (const auto& [id, w] : want) {
    EXPECT_EQ(d.tokens_of(id), w.first) << "request " << id;
    const CoreEvent* end = d.terminal(id);
    ASSERT_NE(end, nullptr);
    EXPECT_EQ(end->kind, CoreEvent::Kind::Finished);
    EXPECT_EQ(end->result.finish, FinishReason::Length);
    EXPECT_EQ(end->result.output_tokens, static_cast<int32_t>(w.first.size()));
    EXPECT_EQ(end->result.prompt_tokens, w.second);
    EXPECT_EQ(end->result.weights_version, 7);
    // No event of a request after its terminal one.
    bool ended = false;
    for (const CoreEvent& e : d.events) {
      if (e.id != id) continue;
      EXPECT_FALSE(ended) << "event after the end of request " << id;
      ended = e.kind != CoreEvent::Kind::Token;
    }
  }
  const StatsSnapshot s = stats_of(core);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.active_sequences, 0);
  EXPECT_EQ(s.output_tokens_total, 2 + 3 + 4 + 5 + 6 + 7);
  EXPECT_EQ(s.ttft[static_cast<int>(Priority::Batch)].count, 6);
}

TEST(EngineCore, RecomputeModeGivesTheSameTokens) {
  CoreOptions o = options();
  o.recompute = true;
  EngineCore core(o);
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  const std::vector<int32_t> p = prompt_of(9, 3);
  const uint64_t id = core.admit(request(p, 6), 0.0);
  d.run();
  EXPECT_EQ(d.tokens_of(id), alone(model, p, 6));
}

TEST(EngineCore, LongPromptsPrefillInChunksBesideRunningDecodes) {
  EngineCore core(options(32, 4, /*max_batch=*/12, /*chunk=*/8));
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  const std::vector<int32_t> a = prompt_of(3, 1), b = prompt_of(30, 2);
  const uint64_t ia = core.admit(request(a, 10), 0.0);
  ASSERT_TRUE(d.step());  // a prefills and samples its first token
  const uint64_t ib = core.admit(request(b, 2), 0.0);
  StepPlan plan = core.plan(1.0);
  ASSERT_EQ(plan.items.size(), 2u);
  EXPECT_EQ(plan.items[0].id, ia);  // the decode first, one token
  EXPECT_EQ(plan.items[0].tokens.size(), 1u);
  EXPECT_TRUE(plan.items[0].wants_logits);
  EXPECT_EQ(plan.items[1].id, ib);  // then the first chunk of the long prompt
  EXPECT_EQ(plan.items[1].tokens.size(), 8u);
  EXPECT_FALSE(plan.items[1].wants_logits);
  core.commit(plan, exec.run(core.step_message(plan)), 1.0);
  d.take();
  d.run();
  EXPECT_EQ(d.tokens_of(ia), alone(model, a, 10));
  EXPECT_EQ(d.tokens_of(ib), alone(model, b, 2));
  for (int64_t n : exec.batch_sizes) EXPECT_LE(n, 12);
}

TEST(EngineCore, CancelStopsEventsAndFreesBlocksAtTheNextPlan) {
  EngineCore core(options());
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  const uint64_t run_id = core.admit(request(prompt_of(5, 1), 20), 0.0);
  const uint64_t keep = core.admit(request(prompt_of(5, 2), 4), 0.0);
  ASSERT_TRUE(d.step());
  ASSERT_TRUE(d.step());
  EXPECT_GT(stats_of(core).kv_blocks_used, 0);
  const size_t before = d.tokens_of(run_id).size();
  // Cancelled while its step is in flight: the step's token is not reported.
  StepPlan plan = core.plan(d.t);
  core.cancel(run_id);
  core.commit(plan, exec.run(core.step_message(plan)), d.t);
  d.take();
  d.run();
  EXPECT_EQ(d.tokens_of(run_id).size(), before);
  EXPECT_EQ(d.terminal(run_id), nullptr);
  EXPECT_EQ(d.tokens_of(keep), alone(model, prompt_of(5, 2), 4));
  EXPECT_FALSE(core.known(run_id));
  EXPECT_EQ(stats_of(core).kv_blocks_used, 0);
  // A queued request cancelled before it ran never runs.
  const uint64_t queued = core.admit(request(prompt_of(4, 3), 3), d.t);
  core.cancel(queued);
  EXPECT_FALSE(d.step());
  EXPECT_TRUE(d.tokens_of(queued).empty());
  EXPECT_EQ(stats_of(core).queue_depth[1], 0);
}

TEST(EngineCore, EndedByTheCallerFreesItsBlocksAtOnceEvenMidStep) {
  EngineCore core(options());
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  const uint64_t id = core.admit(request(prompt_of(8, 1), 20), 0.0);
  ASSERT_TRUE(d.step());
  StepPlan plan = core.plan(d.t);
  const StepMessage m = core.step_message(plan);
  core.end(id);  // ended while the next step runs
  EXPECT_EQ(stats_of(core).kv_blocks_used, 0);
  core.commit(plan, exec.run(m), d.t);
  d.take();
  EXPECT_EQ(d.tokens_of(id).size(), 1u);
  EXPECT_EQ(d.terminal(id), nullptr);
  EXPECT_FALSE(d.step());
  EXPECT_EQ(stats_of(core).prompt_tokens_total, 8);
}

TEST(EngineCore, ExpiredRequestsFailWithDeadlineExceededQueuedOrRunning) {
  EngineCore core(options(32, 1));
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  CoreRequest r = request(prompt_of(4, 1), 30);
  r.deadline_s = 0.0035;  // runs a few steps, then expires
  const uint64_t running = core.admit(r, 0.0);
  CoreRequest q = request(prompt_of(4, 2), 3);
  q.deadline_s = 0.002;  // waits behind the only slot and expires queued
  const uint64_t queued = core.admit(q, 0.0);
  d.run();
  for (uint64_t id : {running, queued}) {
    const CoreEvent* end = d.terminal(id);
    ASSERT_NE(end, nullptr) << id;
    EXPECT_EQ(end->kind, CoreEvent::Kind::Failed);
    EXPECT_EQ(end->error, ErrorKind::DeadlineExceeded);
    EXPECT_NE(end->message.find("deadline"), std::string::npos);
  }
  EXPECT_GT(d.tokens_of(running).size(), 0u);
  EXPECT_LT(d.tokens_of(running).size(), 30u);
  EXPECT_TRUE(d.tokens_of(queued).empty());
  EXPECT_EQ(stats_of(core).kv_blocks_used, 0);
}

TEST(EngineCore, EndOfTextAndContextFullEndARequest) {
  // A model that emits EOT after the token 5 in a short context.
  auto eot_model = [](const std::vector<int32_t>& ctx) { return ctx.back() == 5 && ctx.size() < 8 ? kEot : 5; };
  EngineCore core(options());
  FakeExecutor exec(32, 4, eot_model);
  Driver d{core, exec};
  const uint64_t e = core.admit(request({1, 2}, 10), 0.0);
  const uint64_t full = core.admit(request(prompt_of(60, 1), 10), 0.0);  // 4 tokens of room
  d.run();
  EXPECT_EQ(d.tokens_of(e), (std::vector<int32_t>{5, kEot}));
  EXPECT_EQ(d.terminal(e)->result.finish, FinishReason::EndOfText);
  EXPECT_EQ(d.terminal(full)->result.finish, FinishReason::ContextFull);
  EXPECT_EQ(d.terminal(full)->result.output_tokens, 4);
}

TEST(EngineCore, ClosedAdmissionHoldsTheQueueUntilTheRefresh) {
  EngineCore core(options(), 3);
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  const uint64_t before = core.admit(request(prompt_of(4, 1), 3), 0.0);
  ASSERT_TRUE(d.step());
  core.set_admission(false);  // newer weights: the running one finishes on version 3
  const uint64_t after = core.admit(request(prompt_of(4, 2), 3), 0.0);
  d.run();
  EXPECT_EQ(d.terminal(before)->result.weights_version, 3);
  EXPECT_TRUE(d.tokens_of(after).empty());
  EXPECT_EQ(core.queued(Priority::Batch), 1);
  core.refreshed(4);
  d.run();
  EXPECT_EQ(d.terminal(after)->result.weights_version, 4);
  core.set_training_version(6);
  const StatsSnapshot s = stats_of(core);
  EXPECT_EQ(s.weights_version, 4);
  EXPECT_EQ(s.staleness, 2);
}

TEST(EngineCore, FailAllEndsEveryRequestOnceAndFreesTheCache) {
  EngineCore core(options(32, 2));
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(core.admit(request(prompt_of(5, i), 20), 0.0));
  ASSERT_TRUE(d.step());
  core.cancel(ids[3]);  // a cancelled one gets no event
  core.fail_all(ErrorKind::ShuttingDown, "stopping");
  d.take();
  for (int i = 0; i < 3; ++i) {
    const CoreEvent* end = d.terminal(ids[i]);
    ASSERT_NE(end, nullptr);
    EXPECT_EQ(end->error, ErrorKind::ShuttingDown);
  }
  EXPECT_EQ(d.terminal(ids[3]), nullptr);
  const StatsSnapshot s = stats_of(core);
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.queue_depth[1], 0);
  EXPECT_EQ(s.active_sequences, 0);
  EXPECT_FALSE(d.step());
}

TEST(EngineCore, AFullQueueRefusesWithOverloadedAndRealtimeRunsFirst) {
  EngineCore core(options(32, 1));
  FakeExecutor exec(32, 4, model);
  Driver d{core, exec};
  for (int i = 0; i < 8; ++i) core.admit(request(prompt_of(3, i), 2), 0.0);
  try {
    core.admit(request(prompt_of(3, 9), 2), 0.0);
    FAIL() << "a ninth batch request fit a queue of 8";
  } catch (const ServeError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Overloaded);
    EXPECT_GT(e.retry_after_s(), 0.0);
  }
  const uint64_t rt = core.admit(request(prompt_of(3, 10), 2, Priority::Realtime), 0.0);
  StepPlan plan = core.plan(0.001);
  ASSERT_EQ(plan.items.size(), 1u);  // one slot: the realtime request takes it
  EXPECT_EQ(plan.items[0].id, rt);
  EXPECT_TRUE(core.has_realtime(plan));
  core.commit(plan, exec.run(core.step_message(plan)), 0.001);
  core.note_step(0.5, true);
  core.note_step(0.25, false);
  const StatsSnapshot s = stats_of(core);
  EXPECT_DOUBLE_EQ(s.busy_s, 0.75);
  EXPECT_DOUBLE_EQ(core.batch_seconds(), 0.25);
  EXPECT_EQ(s.queue_depth[1], 8);
}

}  // namespace
}  // namespace tandem::serve
