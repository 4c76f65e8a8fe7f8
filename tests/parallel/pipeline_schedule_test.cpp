// Pipeline schedules (parallel/pipeline_schedule.h): structural invariants over a sweep of
// layouts, in-flight (activation memory) bounds, golden lists, simulated bubbles against the
// closed forms, and the user-facing ConfigError messages. No communication anywhere.
#include "parallel/pipeline_schedule.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "runtime/core/error.h"

namespace tandem {
namespace {

struct Layout {
  ScheduleKind kind;
  int stages;
  int microbatches;
  int chunks;
};

std::string describe(const Layout& l) {
  return fmt::format("schedule={} stages={} microbatches={} chunks={}", schedule_name(l.kind),
                     l.stages, l.microbatches, l.chunks);
}

// Every layout make_schedule can build with stages 1..8, microbatches 1..16, chunks 1..4.
std::vector<Layout> sweep() {
  std::vector<Layout> out;
  for (int p = 1; p <= 8; ++p)
    for (int m = 1; m <= 16; ++m) {
      out.push_back({ScheduleKind::GPipe, p, m, 1});
      out.push_back({ScheduleKind::OneFOneB, p, m, 1});
      if (m % p == 0)
        for (int v = 2; v <= 4; ++v) out.push_back({ScheduleKind::Interleaved, p, m, v});
    }
  return out;
}

// The message of the ConfigError that `fn` throws ("" and a test failure if none).
template <class Fn>
std::string config_error(Fn fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ConfigError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected ConfigError, nothing was thrown";
  return "";
}

std::string schedule(ScheduleKind kind, int stages, int stage, int microbatches, int chunks = 1) {
  return to_string(make_schedule(kind, stages, stage, microbatches, chunks));
}

// ------------------------------------------------------------------ names and validation

TEST(PipelineSchedule, ParsesNamesAndRoundTrips) {
  EXPECT_EQ(parse_schedule("gpipe"), ScheduleKind::GPipe);
  EXPECT_EQ(parse_schedule("1f1b"), ScheduleKind::OneFOneB);
  EXPECT_EQ(parse_schedule("interleaved"), ScheduleKind::Interleaved);
  for (auto k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB, ScheduleKind::Interleaved})
    EXPECT_EQ(parse_schedule(schedule_name(k)), k);
}

TEST(PipelineSchedule, BadNameNamesTheKeyAndTheValue) {
  for (const char* bad : {"", "1F1B", "pipedream", "gpipe "}) {
    const std::string msg = config_error([&] { parse_schedule(bad); });
    EXPECT_NE(msg.find("parallel.schedule"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fmt::format("'{}'", bad)), std::string::npos) << msg;
    EXPECT_NE(msg.find("gpipe, 1f1b or interleaved"), std::string::npos) << msg;
  }
}

TEST(PipelineSchedule, OneFOneBNeedsAsManyMicrobatchesAsStages) {
  EXPECT_EQ(config_error([] { check_schedule(ScheduleKind::OneFOneB, 4, 2, 1); }),
            "parallel.schedule=1f1b needs parallel.microbatches >= parallel.pp "
            "(got microbatches=2, pp=4)");
  EXPECT_NO_THROW(check_schedule(ScheduleKind::OneFOneB, 4, 4, 1));
  EXPECT_NO_THROW(check_schedule(ScheduleKind::OneFOneB, 1, 1, 1));
  // GPipe has no such rule, and make_schedule still builds a 1f1b list for m < p.
  EXPECT_NO_THROW(check_schedule(ScheduleKind::GPipe, 4, 2, 1));
  EXPECT_EQ(schedule(ScheduleKind::OneFOneB, 4, 0, 2), "F0 F1 B0 B1");
}

TEST(PipelineSchedule, InterleavedRules) {
  std::string msg = config_error([] { check_schedule(ScheduleKind::Interleaved, 4, 6, 2); });
  EXPECT_NE(msg.find("parallel.microbatches"), std::string::npos) << msg;
  EXPECT_NE(msg.find("multiple of parallel.pp"), std::string::npos) << msg;
  EXPECT_NE(msg.find("microbatches=6, pp=4"), std::string::npos) << msg;

  msg = config_error([] { check_schedule(ScheduleKind::Interleaved, 4, 8, 1); });
  EXPECT_NE(msg.find("parallel.chunks >= 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("chunks=1"), std::string::npos) << msg;

  // make_schedule refuses what it cannot build, with the same message.
  EXPECT_EQ(config_error([] { make_schedule(ScheduleKind::Interleaved, 4, 0, 6, 2); }),
            config_error([] { check_schedule(ScheduleKind::Interleaved, 4, 6, 2); }));
  EXPECT_NO_THROW(check_schedule(ScheduleKind::Interleaved, 4, 8, 2));
  EXPECT_NO_THROW(check_schedule(ScheduleKind::Interleaved, 1, 3, 3));
}

TEST(PipelineSchedule, GeneralRules) {
  std::string msg = config_error([] { check_schedule(ScheduleKind::GPipe, 0, 4, 1); });
  EXPECT_NE(msg.find("parallel.pp must be >= 1 (got pp=0)"), std::string::npos) << msg;
  msg = config_error([] { check_schedule(ScheduleKind::OneFOneB, 2, 0, 1); });
  EXPECT_NE(msg.find("parallel.microbatches must be >= 1 (got microbatches=0)"),
            std::string::npos)
      << msg;
  for (auto k : {ScheduleKind::GPipe, ScheduleKind::OneFOneB}) {
    msg = config_error([&] { check_schedule(k, 2, 4, 2); });
    EXPECT_NE(msg.find(fmt::format("parallel.schedule={}", schedule_name(k))), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("chunks=2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("parallel.schedule=interleaved"), std::string::npos) << msg;
  }
  // A stage outside the pipeline is a caller bug, not a config mistake.
  EXPECT_THROW(make_schedule(ScheduleKind::OneFOneB, 4, 4, 8), Error);
  EXPECT_THROW(make_schedule(ScheduleKind::OneFOneB, 4, -1, 8), Error);
}

// ------------------------------------------------------------------ virtual stages

TEST(PipelineSchedule, VirtualStagesRoundTripInLayerOrder) {
  for (int p = 1; p <= 8; ++p)
    for (int v = 1; v <= 4; ++v) {
      int expect = 0;
      for (int c = 0; c < v; ++c)
        for (int s = 0; s < p; ++s, ++expect) {
          EXPECT_EQ(virtual_stage(p, s, c), expect);
          EXPECT_EQ(stage_chunk_of(p, expect), (StageChunk{s, c}));
        }
    }
  EXPECT_THROW(virtual_stage(4, 4, 0), Error);
  EXPECT_THROW(stage_chunk_of(0, 1), Error);
}

// ------------------------------------------------------------------ structural invariants

TEST(PipelineSchedule, EveryPairOnceForwardThenBackwardAndNoDeadlock) {
  int layouts = 0;
  for (const Layout& l : sweep()) {
    SCOPED_TRACE(describe(l));
    for (int s = 0; s < l.stages; ++s) {
      const auto actions = make_schedule(l.kind, l.stages, s, l.microbatches, l.chunks);
      ASSERT_EQ(actions.size(), 2u * l.microbatches * l.chunks) << "stage " << s;
      std::map<std::pair<int, int>, int> fwd_at, bwd_at;
      for (int i = 0; i < static_cast<int>(actions.size()); ++i) {
        const Action& a = actions[i];
        ASSERT_GE(a.microbatch, 0);
        ASSERT_LT(a.microbatch, l.microbatches);
        ASSERT_GE(a.chunk, 0);
        ASSERT_LT(a.chunk, l.chunks);
        auto& at = a.phase == Phase::Forward ? fwd_at : bwd_at;
        ASSERT_TRUE(at.emplace(std::pair{a.microbatch, a.chunk}, i).second)
            << "stage " << s << " repeats " << to_string(a) << " in " << to_string(actions);
      }
      ASSERT_EQ(fwd_at.size(), static_cast<size_t>(l.microbatches * l.chunks));
      ASSERT_EQ(bwd_at.size(), fwd_at.size());
      for (const auto& [key, i] : fwd_at)
        ASSERT_LT(i, bwd_at.at(key)) << "stage " << s << ": F" << key.first << " chunk "
                                     << key.second << " after its B in " << to_string(actions);
      // Chunk-0 forwards go in micro-batch order (the data loader feeds them in order).
      int last = -1;
      for (const Action& a : actions)
        if (a.phase == Phase::Forward && a.chunk == 0) {
          ASSERT_EQ(a.microbatch, last + 1);
          last = a.microbatch;
        }
    }
    for (auto [f, b] : {std::pair{1.0, 1.0}, std::pair{1.0, 2.0}}) {
      const SimResult r = simulate(l.kind, l.stages, l.microbatches, l.chunks, f, b);
      ASSERT_FALSE(r.deadlock) << r.blocked;
      ASSERT_EQ(r.busy.size(), static_cast<size_t>(l.stages));
      for (double busy : r.busy) EXPECT_DOUBLE_EQ(busy, l.microbatches * l.chunks * (f + b));
    }
    ++layouts;
  }
  EXPECT_GT(layouts, 300);
}

// ------------------------------------------------------------------ in flight (memory)

TEST(PipelineSchedule, InFlightBounds) {
  for (const Layout& l : sweep()) {
    SCOPED_TRACE(describe(l));
    for (int s = 0; s < l.stages; ++s) {
      const int got =
          max_in_flight(make_schedule(l.kind, l.stages, s, l.microbatches, l.chunks));
      switch (l.kind) {
        case ScheduleKind::GPipe:
          EXPECT_EQ(got, l.microbatches) << "stage " << s;
          break;
        case ScheduleKind::OneFOneB:
          EXPECT_EQ(got, std::min(l.stages - s, l.microbatches)) << "stage " << s;
          EXPECT_LE(got, l.stages);
          break;
        case ScheduleKind::Interleaved: {
          // Warm-up forwards plus the first steady forward, in (micro-batch, chunk) pairs.
          const int warm = warmup_forwards(l.kind, l.stages, s, l.microbatches, l.chunks);
          EXPECT_EQ(got, std::min(warm + 1, l.microbatches * l.chunks)) << "stage " << s;
          EXPECT_EQ(warm, std::min((l.stages - s - 1) * 2 + (l.chunks - 1) * l.stages,
                                   l.microbatches * l.chunks));
          break;
        }
      }
    }
  }
}

TEST(PipelineSchedule, MaxInFlightCountsPairs) {
  EXPECT_EQ(max_in_flight({}), 0);
  const std::vector<Action> list = {{0, 0, Phase::Forward},  {0, 1, Phase::Forward},
                                    {1, 0, Phase::Forward},  {0, 1, Phase::Backward},
                                    {2, 0, Phase::Forward},  {0, 0, Phase::Backward},
                                    {1, 0, Phase::Backward}, {2, 0, Phase::Backward}};
  EXPECT_EQ(max_in_flight(list), 3);
}

// ------------------------------------------------------------------ golden lists

TEST(PipelineSchedule, OneStageIsForwardBackwardPairs) {
  EXPECT_EQ(schedule(ScheduleKind::OneFOneB, 1, 0, 4), "F0 B0 F1 B1 F2 B2 F3 B3");
  EXPECT_EQ(schedule(ScheduleKind::OneFOneB, 1, 0, 1), "F0 B0");
  // GPipe backs up in ascending micro-batch order (documented choice).
  EXPECT_EQ(schedule(ScheduleKind::GPipe, 1, 0, 3), "F0 F1 F2 B0 B1 B2");
  EXPECT_EQ(schedule(ScheduleKind::GPipe, 4, 2, 3), "F0 F1 F2 B0 B1 B2");
}

TEST(PipelineSchedule, OneFOneBGolden) {
  EXPECT_EQ(schedule(ScheduleKind::OneFOneB, 4, 0, 6), "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5");
  EXPECT_EQ(schedule(ScheduleKind::OneFOneB, 4, 1, 6), "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5");
  EXPECT_EQ(schedule(ScheduleKind::OneFOneB, 4, 3, 6), "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5");
}

TEST(PipelineSchedule, InterleavedGoldenMatchesMegatronOrder) {
  // p=2, m=4, v=2. Rank 0 warm-up = (2-0-1)*2 + (2-1)*2 = 4; rank 1 warm-up = 2.
  // Forwards: chunk 0 for micro-batches 0,1, then chunk 1 for 0,1, then the next group.
  // Backwards: the same groups with chunks reversed.
  EXPECT_EQ(schedule(ScheduleKind::Interleaved, 2, 0, 4, 2),
            "F0 F1 F0c1 F1c1 F2 B0c1 F3 B1c1 F2c1 B0 F3c1 B1 B2c1 B3c1 B2 B3");
  EXPECT_EQ(schedule(ScheduleKind::Interleaved, 2, 1, 4, 2),
            "F0 F1 F0c1 B0c1 F1c1 B1c1 F2 B0 F3 B1 F2c1 B2c1 F3c1 B3c1 B2 B3");
  // Warm-up capped at M * chunks: everything forward, then everything backward.
  EXPECT_EQ(schedule(ScheduleKind::Interleaved, 4, 0, 4, 2),
            "F0 F1 F2 F3 F0c1 F1c1 F2c1 F3c1 B0c1 B1c1 B2c1 B3c1 B0 B1 B2 B3");
}

// ------------------------------------------------------------------ simulated bubbles

TEST(PipelineSchedule, GPipeAndOneFOneBBubbleIsClosedForm) {
  for (auto kind : {ScheduleKind::GPipe, ScheduleKind::OneFOneB})
    for (auto [f, b] : {std::pair{1.0, 1.0}, std::pair{1.0, 2.0}, std::pair{0.5, 1.7}})
      for (int p = 1; p <= 8; ++p)
        for (int m = 1; m <= 16; ++m) {
          SCOPED_TRACE(fmt::format("{} p={} m={} f={} b={}", schedule_name(kind), p, m, f, b));
          const SimResult r = simulate(kind, p, m, 1, f, b);
          ASSERT_FALSE(r.deadlock) << r.blocked;
          EXPECT_NEAR(r.bubble_fraction, double(p - 1) / (m + p - 1), 1e-9);
          EXPECT_NEAR(r.makespan, (m + p - 1) * (f + b), 1e-9);
        }
}

TEST(PipelineSchedule, InterleavedBubbleShrinksByChunks) {
  // Costs are per virtual stage, so one chunk is 1/v of a rank's share of the model; the
  // simulator gives Megatron's (p-1)/(v*m + p-1) exactly, i.e. the 1F1B bubble over v.
  for (auto [f, b] : {std::pair{1.0, 1.0}, std::pair{1.0, 2.0}, std::pair{0.5, 1.7}})
    for (int p = 1; p <= 8; ++p)
      for (int m = p; m <= 16; m += p)
        for (int v = 2; v <= 4; ++v) {
          SCOPED_TRACE(fmt::format("p={} m={} v={} f={} b={}", p, m, v, f, b));
          const SimResult r = simulate(ScheduleKind::Interleaved, p, m, v, f, b);
          ASSERT_FALSE(r.deadlock) << r.blocked;
          EXPECT_NEAR(r.bubble_fraction, double(p - 1) / (v * m + p - 1), 1e-9);
          EXPECT_NEAR(r.makespan, (v * m + p - 1) * (f + b), 1e-9);
          const SimResult flat = simulate(ScheduleKind::OneFOneB, p, m, 1, f, b);
          if (p > 1) EXPECT_LT(r.bubble_fraction, flat.bubble_fraction);
          else EXPECT_EQ(r.bubble_fraction, 0.0);
        }
}

TEST(PipelineSchedule, ReferenceFiguresFourStagesEightMicrobatches) {
  const double gpipe = simulate(ScheduleKind::GPipe, 4, 8, 1, 1, 2).bubble_fraction;
  const double f1b1 = simulate(ScheduleKind::OneFOneB, 4, 8, 1, 1, 2).bubble_fraction;
  const double v2 = simulate(ScheduleKind::Interleaved, 4, 8, 2, 1, 2).bubble_fraction;
  const double v4 = simulate(ScheduleKind::Interleaved, 4, 8, 4, 1, 2).bubble_fraction;
  EXPECT_NEAR(gpipe, 3.0 / 11.0, 1e-12);  // 0.2727
  EXPECT_NEAR(f1b1, 3.0 / 11.0, 1e-12);
  EXPECT_NEAR(v2, 3.0 / 19.0, 1e-12);     // 0.1579
  EXPECT_NEAR(v4, 3.0 / 35.0, 1e-12);     // 0.0857
}

// ------------------------------------------------------------------ simulator itself

TEST(PipelineSchedule, SimulatorDetectsDeadlock) {
  // Rank 0 waits in B0 for rank 1, which waits in F1 for rank 0's F1: a cycle.
  const std::vector<std::vector<Action>> lists = {
      {{0, 0, Phase::Forward}, {0, 0, Phase::Backward}, {1, 0, Phase::Forward},
       {1, 0, Phase::Backward}},
      {{1, 0, Phase::Forward}, {0, 0, Phase::Forward}, {0, 0, Phase::Backward},
       {1, 0, Phase::Backward}}};
  const SimResult r = simulate_actions(lists, 1, 1.0, 1.0);
  EXPECT_TRUE(r.deadlock);
  EXPECT_NE(r.blocked.find("rank 0 stuck at action #1 B0 waiting for B0 on rank 1"),
            std::string::npos)
      << r.blocked;
  EXPECT_NE(r.blocked.find("rank 1 stuck at action #0 F1 waiting for F1 on rank 0"),
            std::string::npos)
      << r.blocked;

  // A backward before its own forward on the last stage never becomes ready.
  const SimResult early = simulate_actions({{{0, 0, Phase::Backward}, {0, 0, Phase::Forward}}},
                                           1, 1.0, 1.0);
  EXPECT_TRUE(early.deadlock);
  EXPECT_NE(early.blocked.find("waiting for F0 on rank 0"), std::string::npos) << early.blocked;
}

TEST(PipelineSchedule, SimulatorTimesAHandMadeList) {
  // Two stages, one micro-batch: F on rank 0 (0..1), F on rank 1 (1..2), B on rank 1 (2..5),
  // B on rank 0 (5..8). Busy 4 each, makespan 8, bubble 1/2.
  const SimResult r = simulate_actions(
      {{{0, 0, Phase::Forward}, {0, 0, Phase::Backward}},
       {{0, 0, Phase::Forward}, {0, 0, Phase::Backward}}},
      1, 1.0, 3.0);
  EXPECT_FALSE(r.deadlock);
  EXPECT_DOUBLE_EQ(r.makespan, 8.0);
  EXPECT_EQ(r.busy, (std::vector<double>{4.0, 4.0}));
  EXPECT_DOUBLE_EQ(r.bubble_fraction, 0.5);
}

TEST(PipelineSchedule, SimulatorRejectsMalformedLists) {
  EXPECT_THROW(simulate_actions({}, 1, 1, 1), Error);
  EXPECT_THROW(simulate_actions({{{0, 1, Phase::Forward}}}, 1, 1, 1), Error);  // chunk range
  EXPECT_THROW(simulate_actions({{{0, 0, Phase::Forward}, {0, 0, Phase::Forward}}}, 1, 1, 1),
               Error);  // repeated
  EXPECT_THROW(simulate(ScheduleKind::OneFOneB, 2, 2, 1, -1.0, 1.0), Error);
}


// Runs every rank's list where each rank must also wait at every cut marked in `barrier` until
// all ranks have reached it (a serving window's collective); true when every action ran.
bool runs_with_barriers(const std::vector<std::vector<Action>>& lists, int chunks,
                               const std::vector<bool>& barrier) {
  const int S = static_cast<int>(lists.size());
  const size_t n = lists[0].size();
  std::set<std::tuple<int, int, int>> done;  // (backward, microbatch, virtual stage)
  std::vector<size_t> next(S, 0);
  for (bool moved = true; moved;) {
    moved = false;
    for (int r = 0; r < S; ++r) {
      while (next[r] < n) {
        const size_t k = next[r];
        if (k > 0 && barrier[k]) {  // at cut k: every rank must have arrived
          bool all = true;
          for (int q = 0; q < S; ++q) all = all && next[q] >= k;
          if (!all) break;
        }
        const Action& a = lists[r][k];
        const int v = a.chunk * S + r, V = S * chunks;
        const bool ready = a.phase == Phase::Forward
                               ? (v == 0 || done.count({0, a.microbatch, v - 1}))
                               : (done.count({0, a.microbatch, v}) &&
                                  (v == V - 1 || done.count({1, a.microbatch, v + 1})));
        if (!ready) break;
        done.insert({a.phase == Phase::Backward, a.microbatch, v});
        ++next[r];
        moved = true;
      }
    }
  }
  for (int r = 0; r < S; ++r)
    if (next[r] < n) return false;
  return true;
}

TEST(PipelineSchedule, SafeCutsLetEveryScheduleFinishWithABarrierAtEachOne) {
  struct Case { ScheduleKind kind; int stages, M, chunks; };
  const Case cases[] = {{ScheduleKind::GPipe, 1, 4, 1},       {ScheduleKind::GPipe, 2, 4, 1},
                        {ScheduleKind::OneFOneB, 2, 4, 1},    {ScheduleKind::OneFOneB, 4, 8, 1},
                        {ScheduleKind::OneFOneB, 3, 5, 1},    {ScheduleKind::Interleaved, 2, 4, 2},
                        {ScheduleKind::Interleaved, 4, 8, 2}, {ScheduleKind::Interleaved, 2, 6, 3}};
  for (const Case& c : cases) {
    std::vector<std::vector<Action>> lists;
    for (int s = 0; s < c.stages; ++s) lists.push_back(make_schedule(c.kind, c.stages, s, c.M, c.chunks));
    const std::vector<bool> safe = safe_cuts(lists, c.chunks);
    ASSERT_EQ(safe.size(), lists[0].size() + 1);
    EXPECT_TRUE(safe.front() && safe.back());
    int count = 0;
    for (bool b : safe) count += b;
    if (c.stages == 1) {
      EXPECT_EQ(count, static_cast<int>(safe.size()));
    }
    // Between micro-batches there must be somewhere to serve: at least one inner cut.
    EXPECT_GT(count, 2) << schedule_name(c.kind) << " pp " << c.stages << " M " << c.M;
    EXPECT_TRUE(runs_with_barriers(lists, c.chunks, safe))
        << schedule_name(c.kind) << " pp " << c.stages << " M " << c.M << " chunks " << c.chunks;
    // Each cut not marked safe deadlocks on its own as a barrier (the flags are exact).
    for (size_t k = 1; k < safe.size(); ++k) {
      if (safe[k]) continue;
      std::vector<bool> only(safe.size(), false);
      only[k] = true;
      EXPECT_FALSE(runs_with_barriers(lists, c.chunks, only))
          << "cut " << k << " of " << schedule_name(c.kind) << " pp " << c.stages;
    }
  }
}

TEST(PipelineSchedule, SafeCutsOfHandMadeListsAndBadInput) {
  // Stage 1 waits at position 1 for stage 0's F1 at position 1 (same index: still safe).
  const std::vector<std::vector<Action>> even = {
      {{0, 0, Phase::Forward}, {1, 0, Phase::Forward}, {0, 0, Phase::Backward}, {1, 0, Phase::Backward}},
      {{0, 0, Phase::Forward}, {0, 0, Phase::Backward}, {1, 0, Phase::Forward}, {1, 0, Phase::Backward}}};
  EXPECT_EQ(safe_cuts(even, 1), (std::vector<bool>{true, true, true, true, true}));
  // Stage 1's F1 at position 1 needs stage 0's F1 at position 2, so cut 2 is unsafe; stage
  // 0's B0 at position 1 needs stage 1's B0 at position 2, so cut 3 is the next safe one. (The
  // list deadlocks anyway; safe_cuts only reads the dependencies.)
  const std::vector<std::vector<Action>> skewed = {
      {{0, 0, Phase::Forward}, {0, 0, Phase::Backward}, {1, 0, Phase::Forward}, {1, 0, Phase::Backward}},
      {{0, 0, Phase::Forward}, {1, 0, Phase::Forward}, {0, 0, Phase::Backward}, {1, 0, Phase::Backward}}};
  EXPECT_EQ(safe_cuts(skewed, 1), (std::vector<bool>{true, true, false, true, true}));
  EXPECT_THROW(safe_cuts({even[0], {even[1][0]}}, 1), Error);  // lengths differ
  EXPECT_THROW(safe_cuts(even, 0), Error);
}
}  // namespace
}  // namespace tandem
