// Scheduler, KV block pool, step wire format and text stream: the engine's model-free parts.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "serve/kv_block_pool.h"
#include "serve/scheduler.h"
#include "serve/step_wire.h"
#include "serve/text_stream.h"

namespace tandem::serve {
namespace {

SeqRequest req(uint64_t id, Priority p, int prompt, int max_tokens, double deadline = 0) {
  SeqRequest r;
  r.id = id;
  r.priority = p;
  r.prompt.assign(static_cast<size_t>(prompt), 7);
  r.max_tokens = max_tokens;
  r.deadline = deadline;
  return r;
}

SchedulerOptions small() {
  SchedulerOptions o;
  o.kv_blocks = 8;
  o.block_tokens = 4;
  o.max_seqs = 3;
  o.max_batch_tokens = 10;
  o.prefill_chunk = 6;
  o.queue_capacity[0] = 2;
  o.queue_capacity[1] = 2;
  o.seq_len = 32;
  return o;
}

TEST(KvBlockPool, AllOrNothingAndDoubleFreeIsAnError) {
  KvBlockPool pool(4);
  std::vector<int32_t> a, b;
  EXPECT_TRUE(pool.allocate(3, a));
  EXPECT_FALSE(pool.allocate(2, b));
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(pool.free_count(), 1);
  std::vector<int32_t> copy = a;
  pool.release(a);
  EXPECT_EQ(pool.free_count(), 4);
  EXPECT_THROW(pool.release(copy), Error);
}

TEST(Scheduler, RealtimeFirstChunkedPrefillBesideDecodes) {
  Scheduler s(small());
  s.enqueue(req(1, Priority::Batch, 3, 2));
  StepPlan p1 = s.plan(0.0);
  ASSERT_EQ(p1.items.size(), 1u);
  EXPECT_TRUE(p1.items[0].wants_logits);  // short prompt: whole prefill at once
  s.commit(p1, {11});
  // A long realtime prompt (14 tokens) arrives: it prefills in chunks of 6 while 1 decodes.
  s.enqueue(req(2, Priority::Realtime, 14, 2));
  StepPlan p2 = s.plan(0.1);
  ASSERT_EQ(p2.items.size(), 2u);
  EXPECT_EQ(p2.items[0].id, 1u);  // the decode runs first, one token
  EXPECT_EQ(p2.items[0].tokens, std::vector<int32_t>{11});
  EXPECT_EQ(p2.items[1].id, 2u);
  EXPECT_EQ(p2.items[1].tokens.size(), 6u);
  EXPECT_FALSE(p2.items[1].wants_logits);
  s.commit(p2, {12});
  s.finish(1);
  StepPlan p3 = s.plan(0.2);
  ASSERT_EQ(p3.items.size(), 1u);
  EXPECT_EQ(p3.items[0].past, 6);
  EXPECT_EQ(p3.items[0].tokens.size(), 6u);
  s.commit(p3, {});
  StepPlan p4 = s.plan(0.3);
  EXPECT_EQ(p4.items[0].tokens.size(), 2u);
  EXPECT_TRUE(p4.items[0].wants_logits);
  EXPECT_EQ(p4.items[0].sampling.step, 0);
  // Its batch view: positions 12, 13 on the blocks it reserved for 14 + 2 tokens (4 blocks).
  InferBatch b = p4.batch(s);
  EXPECT_EQ(b.positions, (std::vector<int32_t>{12, 13}));
  EXPECT_EQ(s.blocks_of(2).size(), 4u);
  b.validate(8, 4, 32, 50257);
}

TEST(Scheduler, BoundedQueuesRefuseWithOverloadedAndBlocksGate) {
  Scheduler s(small());
  s.enqueue(req(1, Priority::Batch, 10, 6));  // 4 blocks
  s.enqueue(req(2, Priority::Batch, 10, 6));  // 4 blocks
  try {
    s.enqueue(req(3, Priority::Batch, 2, 2));
    FAIL() << "a third batch request fit a queue of 2";
  } catch (const ServeError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Overloaded);
    EXPECT_GT(e.retry_after_s(), 0.0);
  }
  s.enqueue(req(4, Priority::Realtime, 10, 6));  // the realtime queue is separate
  StepPlan p = s.plan(0.0);
  // Budget 10 tokens: the realtime request is admitted first (6-token chunk), then batch 1 (4).
  ASSERT_EQ(p.items.size(), 2u);
  EXPECT_EQ(p.items[0].id, 4u);
  EXPECT_EQ(p.items[1].id, 1u);
  EXPECT_EQ(s.pool().free_count(), 0);
  EXPECT_EQ(s.queued(Priority::Batch), 1);  // request 2 waits for blocks
}

TEST(Scheduler, CancelAndDeadlineFreeBlocks) {
  Scheduler s(small());
  s.enqueue(req(1, Priority::Batch, 4, 4));
  s.enqueue(req(2, Priority::Batch, 4, 4, /*deadline=*/5.0));
  StepPlan p = s.plan(0.0);
  s.commit(p, {1, 2});
  EXPECT_EQ(s.pool().used(), 4);
  s.cancel(1);
  StepPlan q = s.plan(6.0);  // 1 cancelled, 2 past its deadline
  ASSERT_EQ(q.dropped.size(), 2u);
  std::set<std::pair<uint64_t, int>> got;
  for (auto [id, why] : q.dropped) got.emplace(id, static_cast<int>(why));
  EXPECT_TRUE(got.count({1, static_cast<int>(DropReason::Cancelled)}));
  EXPECT_TRUE(got.count({2, static_cast<int>(DropReason::DeadlineExceeded)}));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(s.pool().used(), 0);
  EXPECT_EQ(s.running(), 0);
}

TEST(Scheduler, ClosedAdmissionRunsTheAdmittedAndHoldsTheQueue) {
  Scheduler s(small());
  s.enqueue(req(1, Priority::Batch, 3, 3));
  StepPlan p = s.plan(0.0);
  s.commit(p, {7});
  s.set_admission(false);
  s.enqueue(req(2, Priority::Realtime, 3, 2));
  StepPlan q = s.plan(0.1);  // only the running batch sequence decodes
  ASSERT_EQ(q.items.size(), 1u);
  EXPECT_EQ(q.items[0].id, 1u);
  EXPECT_EQ(s.queued(Priority::Realtime), 1);
  EXPECT_EQ(s.running(Priority::Batch), 1);
  EXPECT_EQ(s.running(Priority::Realtime), 0);
  s.commit(q, {8});
  s.finish(1);
  EXPECT_TRUE(s.plan(0.2).empty());  // nothing runs while admission stays closed
  s.set_admission(true);
  StepPlan r = s.plan(0.3);
  ASSERT_EQ(r.items.size(), 1u);
  EXPECT_EQ(r.items[0].id, 2u);
  EXPECT_EQ(s.running(Priority::Realtime), 1);
}

TEST(StepWire, RoundTripsAndRejectsTruncation) {
  StepMessage m;
  m.command = StepCommand::Forward;
  m.batch.add_sequence({5, 6, 7}, 0, {3, 1}, 4, true);
  m.batch.add_sequence({9}, 6, {0, 2}, 4, true);
  m.sampling = {SamplingParams{0.7f, 40, 0.9f, 0xFFFFFFFF12345678ull, 3}, SamplingParams{}};
  const auto wire = encode_step(m);
  StepMessage d = decode_step(wire);
  EXPECT_EQ(d.command, m.command);
  EXPECT_EQ(d.batch.tokens, m.batch.tokens);
  EXPECT_EQ(d.batch.slots, m.batch.slots);
  EXPECT_EQ(d.batch.block_table, m.batch.block_table);
  EXPECT_EQ(d.batch.ctx_len, (std::vector<int32_t>{3, 7}));
  EXPECT_EQ(d.sampling[0].seed, 0xFFFFFFFF12345678ull);
  EXPECT_EQ(d.sampling[0].top_p, 0.9f);
  EXPECT_EQ(d.sampling[0].step, 3);
  std::vector<int32_t> cut(wire.begin(), wire.end() - 1);
  EXPECT_THROW(decode_step(cut), Error);
  EXPECT_EQ(decode_step(encode_step(StepMessage{})).command, StepCommand::Idle);
  StepMessage refresh;
  refresh.command = StepCommand::Refresh;
  EXPECT_EQ(decode_step(encode_step(refresh)).command, StepCommand::Refresh);
  std::vector<int32_t> bad = encode_step(StepMessage{});
  bad[1] = 6;  // no such command
  EXPECT_THROW(decode_step(bad), Error);
}

TEST(TextStream, HoldsBackStopPrefixesAndPartialUtf8) {
  const std::string dir = std::string(TANDEM_DATA_DIR) + "/gpt2";
  if (!std::filesystem::exists(dir + "/encoder.json")) GTEST_SKIP() << "no tokenizer in " << dir;
  BpeTokenizer tok = BpeTokenizer::load(dir);
  {
    TextStream ts(tok, {" world!"});
    std::string out;
    bool stopped = false;
    for (int32_t id : tok.encode("Hello world! more")) {
      out += ts.push(id, &stopped);
      if (stopped) break;
    }
    EXPECT_TRUE(stopped);
    EXPECT_EQ(out, "Hello");
  }
  {
    TextStream ts(tok, {});
    std::string out;
    bool stopped = false;
    const std::string text = "na\xc3\xafve caf\xc3\xa9 \xe2\x82\xac";  // naïve café €
    for (int32_t id : tok.encode(text)) {
      const std::string piece = ts.push(id, &stopped);
      EXPECT_EQ(incomplete_utf8_tail(piece), 0u) << "a piece ends inside a character";
      out += piece;
    }
    out += ts.flush();
    EXPECT_EQ(out, text);
  }
}

}  // namespace
}  // namespace tandem::serve
