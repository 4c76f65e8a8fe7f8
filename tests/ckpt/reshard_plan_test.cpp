// Reshard plan (ckpt/reshard_plan.h): hyperslab pieces -> runs of stored flat indices,
// disjoint ownership among senders, and sender x receiver segments, against brute force.
#include "ckpt/reshard_plan.h"

#include <gtest/gtest.h>

#include <map>

#include "runtime/core/error.h"

namespace tandem::ckpt {
namespace {

// (gtest's Test::Run hides the type inside TEST bodies)
using StoredRun = Run;
using Runs = std::vector<Run>;

// stored flat index -> (buffer, offset) for every element a rank's runs cover.
std::map<int64_t, std::pair<int32_t, int64_t>> expand(const std::vector<Run>& runs) {
  std::map<int64_t, std::pair<int32_t, int64_t>> m;
  for (const Run& r : runs)
    for (int64_t i = 0; i < r.len; ++i) EXPECT_TRUE(m.emplace(r.begin + i, std::make_pair(r.buffer, r.offset + i)).second);
  return m;
}

std::vector<Run> rank_runs(const ShardRule& rule, const Dims& stored, uint64_t name, int64_t base) {
  std::vector<Run> out;
  for (const Piece& p : pieces(rule, stored, 0, local_numel(rule))) {
    auto v = slab_runs(p, stored, name, 0, base);
    out.insert(out.end(), v.begin(), v.end());
  }
  sort_runs(out);
  return out;
}

TEST(ReshardPlan, SlabRunsMatchSlabIndicesInLocalOrder) {
  // A [6, 8] tensor split over 4 parts along columns: each part holds 6 runs of 2.
  const Dims shape{6, 8};
  for (int part = 0; part < 4; ++part) {
    ShardRule rule{shape, {}, 1, 4, part};
    Runs runs = rank_runs(rule, shape, 1, 100);
    EXPECT_EQ(runs.size(), 6u);
    EXPECT_EQ(runs_numel(runs), 12);
    int64_t local = 100;
    for (const Piece& p : pieces(rule, shape, 0, local_numel(rule)))
      for (int64_t idx : slab_indices(p.slab, shape)) {
        auto m = expand(runs);
        ASSERT_TRUE(m.count(idx));
        EXPECT_EQ(m[idx].second, local++) << "part " << part << " index " << idx;
      }
  }
  // Rows split (qkv-like view [3, 4, 8] of [12, 8], split along the middle): whole rows merge.
  ShardRule rows{{12, 8}, {3, 4, 8}, 1, 2, 1};
  Runs r = rank_runs(rows, {12, 8}, 2, 0);
  EXPECT_EQ(r.size(), 3u);  // rows 2-3, 6-7, 10-11 of each of the three blocks
  EXPECT_EQ(r[0].begin, 16);
  EXPECT_EQ(r[0].len, 16);
}

TEST(ReshardPlan, ClippedPaddingRowsBelongToNoRun) {
  ShardRule rule{{8, 4}, {}, -1, 1, 0};
  Runs runs = rank_runs(rule, {5, 4}, 3, 0);  // rows 5-7 are padding
  EXPECT_EQ(runs_numel(runs), 20);
}

TEST(ReshardPlan, OwnDisjointSendsReplicatedElementsOnce) {
  const Dims shape{4, 6};
  ShardRule whole{shape, {}, -1, 1, 0};
  ShardRule half0{shape, {}, 1, 2, 0}, half1{shape, {}, 1, 2, 1};
  // Sender 0 and 1 hold column halves, sender 2 the whole tensor (a replica).
  std::vector<Runs> senders = {rank_runs(half0, shape, 7, 0), rank_runs(half1, shape, 7, 0),
                                           rank_runs(whole, shape, 7, 0)};
  auto owned = own_disjoint(senders);
  EXPECT_EQ(runs_numel(owned[0]) + runs_numel(owned[1]) + runs_numel(owned[2]), 24);
  auto m0 = expand(owned[0]), m1 = expand(owned[1]), m2 = expand(owned[2]);
  for (int64_t i = 0; i < 24; ++i)
    EXPECT_EQ(m0.count(i) + m1.count(i) + m2.count(i), 1u) << "element " << i;
  // Identical holdings (a tensor replicated over tp): the first sender sends all of it.
  auto same = own_disjoint({rank_runs(whole, shape, 7, 0), rank_runs(whole, shape, 7, 0)});
  EXPECT_EQ(runs_numel(same[0]), 24);
  EXPECT_EQ(runs_numel(same[1]), 0);
}

TEST(ReshardPlan, SegmentsAgreeWithBruteForce) {
  // Sender: columns split in 3; receiver: rows split in 2 (other layout); two tensors.
  const Dims shape{6, 9};
  for (int s = 0; s < 3; ++s)
    for (int r = 0; r < 2; ++r) {
      Runs snd = rank_runs({shape, {}, 1, 3, s}, shape, 5, 1000);
      Runs rcv = rank_runs({shape, {}, 0, 2, r}, shape, 5, 0);
      auto more_s = rank_runs({{4}, {}, -1, 1, 0}, {4}, 9, 2000);
      auto more_r = rank_runs({{4}, {}, 0, 2, r}, {4}, 9, 50);
      snd.insert(snd.end(), more_s.begin(), more_s.end());
      rcv.insert(rcv.end(), more_r.begin(), more_r.end());
      sort_runs(snd);
      sort_runs(rcv);
      std::vector<Segment> segs = segments(snd, rcv);
      // Brute force: every (src, dst) pair of a stored element both hold, in (name, index) order.
      std::vector<std::pair<int64_t, int64_t>> want, got;
      for (uint64_t name : {5u, 9u}) {
        Runs a, b;
        for (const StoredRun& x : snd) if (x.name == name) a.push_back(x);
        for (const StoredRun& x : rcv) if (x.name == name) b.push_back(x);
        auto ma = expand(a), mb = expand(b);
        for (auto& [idx, loc] : ma)
          if (mb.count(idx)) want.push_back({loc.second, mb[idx].second});
      }
      for (const Segment& g : segs)
        for (int64_t i = 0; i < g.len; ++i) got.push_back({g.src_offset + i, g.dst_offset + i});
      EXPECT_EQ(got, want) << "sender " << s << " receiver " << r;
    }
}

TEST(ReshardPlan, OverlappingRunsOfOneRankAreRejected) {
  Runs runs = {{1, 0, 10, 0, 0}, {1, 5, 10, 0, 20}};
  EXPECT_THROW(sort_runs(runs), Error);
}

}  // namespace
}  // namespace tandem::ckpt
