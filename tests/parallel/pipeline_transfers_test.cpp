// Pipeline transfer plans: every schedule's plan runs to the end under rendezvous semantics
// (with and without serving windows at its safe cuts), 1F1B pairs a forward's send with the
// next backward's receive as Megatron does, the naive pairing deadlocks interleaved schedules
// (the checker sees it), and bad input is refused with the ranks and actions named.
#include <gtest/gtest.h>

#include "parallel/pipeline_transfers.h"
#include "runtime/core/error.h"

namespace tandem {
namespace {

std::vector<std::vector<Action>> lists_of(ScheduleKind kind, int stages, int M, int chunks) {
  std::vector<std::vector<Action>> lists;
  for (int s = 0; s < stages; ++s) lists.push_back(make_schedule(kind, stages, s, M, chunks));
  return lists;
}

// Forward-only (evaluation) lists: every micro-batch through every chunk, on every rank.
std::vector<std::vector<Action>> eval_lists(int stages, int M, int chunks) {
  std::vector<Action> one;
  for (int m = 0; m < M; ++m)
    for (int c = 0; c < chunks; ++c) one.push_back({m, c, Phase::Forward});
  return std::vector<std::vector<Action>>(stages, one);
}

// Each action's send posted with the next action's receive, waited for together.
std::vector<TransferPlan> naive_pairing(const std::vector<std::vector<Action>>& lists, int chunks) {
  const int S = static_cast<int>(lists.size()), V = S * chunks;
  std::vector<TransferPlan> plans(S);
  for (int r = 0; r < S; ++r) {
    std::vector<Transfer> held;
    for (size_t k = 0; k < lists[r].size(); ++k) {
      const Action& a = lists[r][k];
      const int v = virtual_stage(S, r, a.chunk);
      std::vector<Transfer> ex = held;
      held.clear();
      const bool fwd = a.phase == Phase::Forward;
      if (fwd ? v > 0 : v < V - 1) {
        const int from = stage_chunk_of(S, fwd ? v - 1 : v + 1).stage;
        if (from != r) ex.push_back({a.phase, a.microbatch, v, from, false});
      }
      if (!ex.empty()) plans[r].push_back({PipelineStep::Kind::Exchange, 0, ex});
      plans[r].push_back({PipelineStep::Kind::Compute, k, {}});
      if (fwd ? v < V - 1 : v > 0) {
        const int to_v = fwd ? v + 1 : v - 1, to = stage_chunk_of(S, to_v).stage;
        if (to != r) held.push_back({a.phase, a.microbatch, to_v, to, true});
      }
    }
    if (!held.empty()) plans[r].push_back({PipelineStep::Kind::Exchange, 0, held});
  }
  return plans;
}

int count_steps(const TransferPlan& plan, PipelineStep::Kind kind) {
  int n = 0;
  for (const PipelineStep& s : plan) n += s.kind == kind;
  return n;
}

TEST(PipelineTransfers, EveryScheduleRunsToTheEndWithAndWithoutWindows) {
  int plans_checked = 0;
  for (int stages = 1; stages <= 8; ++stages)
    for (int M = 1; M <= 12; ++M)
      for (int kind = 0; kind < 4; ++kind)
        for (int chunks = 1; chunks <= 3; ++chunks) {
          std::vector<std::vector<Action>> lists;
          if (kind == 3) {
            lists = eval_lists(stages, M, chunks);
          } else {
            const ScheduleKind k = static_cast<ScheduleKind>(kind);
            if ((k == ScheduleKind::Interleaved) != (chunks > 1)) continue;
            if (k == ScheduleKind::Interleaved && M % stages != 0) continue;
            lists = lists_of(k, stages, M, chunks);
          }
          const std::string what = fmt::format("kind {} pp {} M {} chunks {}", kind, stages, M, chunks);
          const auto plain = plan_transfers(lists, chunks);
          ASSERT_EQ(check_transfers(lists, chunks, plain), "") << what;
          const std::vector<bool> cuts = safe_cuts(lists, chunks);
          const auto windowed = plan_transfers(lists, chunks, cuts);
          ASSERT_EQ(check_transfers(lists, chunks, windowed), "") << what << " with windows";
          int inner = 0;
          for (size_t k = 1; k + 1 < cuts.size(); ++k) inner += cuts[k];
          for (int r = 0; r < stages; ++r) {
            EXPECT_EQ(count_steps(plain[r], PipelineStep::Kind::Window), 0) << what;
            EXPECT_EQ(count_steps(windowed[r], PipelineStep::Kind::Window), inner) << what;
            // The rank's actions in order, none left out.
            EXPECT_EQ(count_steps(plain[r], PipelineStep::Kind::Compute),
                      static_cast<int>(lists[r].size())) << what;
            if (stages == 1) {
              EXPECT_EQ(count_steps(plain[r], PipelineStep::Kind::Exchange), 0) << what;
            }
          }
          plans_checked += 2;
        }
  EXPECT_GT(plans_checked, 1000);
}

TEST(PipelineTransfers, OneFOneBSendsAForwardWithTheNextBackwardsReceive) {
  const auto lists = lists_of(ScheduleKind::OneFOneB, 4, 6, 1);
  const auto plans = plan_transfers(lists, 1);
  // Stage 0's steady state: F3's activation goes to stage 1 in one batch with B0's gradient
  // from it (Megatron's send_forward_recv_backward); the warm-up forwards send alone.
  const std::string s0 = to_string(plans[0], lists[0]);
  EXPECT_NE(s0.find("F0 {>F0v1@1} F1 {>F1v1@1} F2 {>F2v1@1} F3 {>F3v1@1 <B0v0@1} B0"),
            std::string::npos) << s0;
  // The last stage in its steady state returns B1's gradient in one batch with F2's activation
  // (send_backward_recv_forward).
  const std::string s3 = to_string(plans[3], lists[3]);
  EXPECT_NE(s3.find("B1 {<F2v3@2 >B1v2@2} F2"), std::string::npos) << s3;
}

TEST(PipelineTransfers, NaivePairingDeadlocksInterleavedButNotOneFOneB) {
  const auto one_f = lists_of(ScheduleKind::OneFOneB, 4, 8, 1);
  EXPECT_EQ(check_transfers(one_f, 1, naive_pairing(one_f, 1)), "");
  const auto inter = lists_of(ScheduleKind::Interleaved, 2, 4, 2);
  const std::string verdict = check_transfers(inter, 2, naive_pairing(inter, 2));
  EXPECT_EQ(verdict.rfind("deadlock", 0), 0u) << verdict;
  EXPECT_NE(verdict.find("rank 0 at step"), std::string::npos) << verdict;
  EXPECT_EQ(check_transfers(inter, 2, plan_transfers(inter, 2)), "");
}

TEST(PipelineTransfers, ChunksOfOneRankHandOverLocally) {
  const auto lists = lists_of(ScheduleKind::Interleaved, 1, 3, 3);
  const auto plans = plan_transfers(lists, 3, safe_cuts(lists, 3));
  ASSERT_EQ(plans.size(), 1u);
  EXPECT_EQ(count_steps(plans[0], PipelineStep::Kind::Exchange), 0);
  EXPECT_EQ(count_steps(plans[0], PipelineStep::Kind::Window), static_cast<int>(lists[0].size()) - 1);
  EXPECT_EQ(check_transfers(lists, 3, plans), "");
}

TEST(PipelineTransfers, CheckerFindsWrongOrderMissingInputsAndBadPlans) {
  const auto lists = lists_of(ScheduleKind::OneFOneB, 2, 4, 1);
  const auto good = plan_transfers(lists, 1);
  // Swap rank 1's first two receives (both from rank 0): NCCL would match them the wrong way.
  auto swapped = good;
  std::vector<Transfer*> recvs;
  for (PipelineStep& s : swapped[1])
    for (Transfer& t : s.transfers)
      if (!t.send && recvs.size() < 2) recvs.push_back(&t);
  ASSERT_EQ(recvs.size(), 2u);
  std::swap(*recvs[0], *recvs[1]);
  EXPECT_NE(check_transfers(lists, 1, swapped).find("order"), std::string::npos);
  // Drop rank 1's first exchange: its first forward runs without its input.
  auto missing = good;
  ASSERT_EQ(missing[1][0].kind, PipelineStep::Kind::Exchange);
  missing[1].erase(missing[1].begin());
  EXPECT_NE(check_transfers(lists, 1, missing), "");
  EXPECT_NE(check_transfers(lists, 1, {good[0]}), "");  // a rank without a plan
}

TEST(PipelineTransfers, RefusesListsThatCannotRunAndUnsafeWindows) {
  // Rank 0 runs B0 first: its gradient needs rank 1's B0, which needs rank 0's F0.
  const std::vector<std::vector<Action>> stuck = {
      {{0, 0, Phase::Backward}, {0, 0, Phase::Forward}},
      {{0, 0, Phase::Forward}, {0, 0, Phase::Backward}}};
  try {
    plan_transfers(stuck, 1);
    FAIL() << "planned lists that cannot run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 0 at action #0 B0 waits for B0v0 from rank 1"),
              std::string::npos) << e.what();
  }
  // Cut 2 of these lists is not safe (pipeline_schedule_test.cpp): no window there.
  const std::vector<std::vector<Action>> skewed = {
      {{0, 0, Phase::Forward}, {0, 0, Phase::Backward}, {1, 0, Phase::Forward}, {1, 0, Phase::Backward}},
      {{0, 0, Phase::Forward}, {1, 0, Phase::Forward}, {0, 0, Phase::Backward}, {1, 0, Phase::Backward}}};
  EXPECT_THROW(plan_transfers(skewed, 1, {false, false, true, false, false}), Error);
  const auto lists = lists_of(ScheduleKind::GPipe, 2, 2, 1);
  EXPECT_THROW(plan_transfers(lists, 1, {true, true}), Error);  // flags for another length
  EXPECT_THROW(plan_transfers({lists[0], {lists[1][0]}}, 1, {true, true, true, true, true}), Error);
  EXPECT_THROW(plan_transfers(lists, 0), Error);
}

}  // namespace
}  // namespace tandem
