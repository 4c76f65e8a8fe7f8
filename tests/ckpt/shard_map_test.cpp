// The shard map on its own: hyperslabs of hand-checked cases, an exhaustive check that the
// pieces of every local sub-range hold exactly the logical elements of that range, row
// clipping, and errors that name the shapes.
#include <gtest/gtest.h>

#include <numeric>

#include "ckpt/shard_map.h"
#include "runtime/core/error.h"

namespace tandem::ckpt {
namespace {

// Logical flat index of local element j (row-major over the local view) of a part.
int64_t logical_of(const ShardRule& r, int64_t j) {
  const Dims view = r.view.empty() ? r.logical : r.view, lv = local_view(r);
  Dims c(lv.size());
  for (size_t d = lv.size(); d-- > 0;) {
    c[d] = j % lv[d];
    j /= lv[d];
  }
  if (r.shard_dim >= 0) c[r.shard_dim] += r.index * lv[r.shard_dim];
  int64_t idx = 0;
  for (size_t d = 0; d < view.size(); ++d) idx = idx * view[d] + c[d];
  return idx;
}

TEST(ShardMap, QkvShardIsOneStridedHyperslab) {
  // qkv weight [3C, C] with C = 4, viewed [3, C, C], heads split over 2 ranks (dim 1).
  ShardRule r{{12, 4}, {3, 4, 4}, 1, 2, 1};
  auto ps = pieces(r, r.logical, 0, local_numel(r));
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].slab.start, (Dims{2, 0}));
  EXPECT_EQ(ps[0].slab.stride, (Dims{4, 1}));
  EXPECT_EQ(ps[0].slab.count, (Dims{3, 1}));
  EXPECT_EQ(ps[0].slab.block, (Dims{2, 4}));
  EXPECT_EQ(slab_indices(ps[0].slab, r.logical),
            (std::vector<int64_t>{8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31, 40, 41,
                                  42, 43, 44, 45, 46, 47}));
}

TEST(ShardMap, ColumnShardIsOneHyperslab) {
  ShardRule r{{4, 8}, {}, 1, 4, 2};  // row-parallel weight, columns 4..5
  auto ps = pieces(r, r.logical, 0, 8);
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].slab.start, (Dims{0, 4}));
  EXPECT_EQ(ps[0].slab.block, (Dims{4, 2}));
}

TEST(ShardMap, EverySubRangeMapsToItsLogicalElements) {
  const ShardRule rules[] = {
      {{12, 4}, {3, 4, 4}, 1, 2, 1}, {{12}, {3, 4}, 1, 2, 0}, {{6, 5}, {}, 0, 3, 2},
      {{6, 5}, {}, -1, 1, 0},        {{4, 6}, {}, 1, 3, 1},   {{2, 3, 4}, {}, 2, 2, 1},
      {{24, 2}, {2, 3, 4, 2}, 2, 2, 1},
  };
  for (const ShardRule& r : rules) {
    const int64_t n = local_numel(r);
    for (int64_t b = 0; b <= n; ++b)
      for (int64_t e = b; e <= n; ++e) {
        std::vector<int64_t> got;
        int64_t expect_offset = b;
        for (const Piece& p : pieces(r, r.logical, b, e)) {
          ASSERT_EQ(p.local_offset, expect_offset) << dims_str(r.logical) << " [" << b << ", " << e << ")";
          ASSERT_EQ(p.numel, p.slab.numel());
          for (int64_t i : slab_indices(p.slab, r.logical)) got.push_back(i);
          expect_offset += p.numel;
        }
        ASSERT_EQ(expect_offset, e);
        std::vector<int64_t> want;
        for (int64_t j = b; j < e; ++j) want.push_back(logical_of(r, j));
        ASSERT_EQ(got, want) << dims_str(r.logical) << " view " << dims_str(r.view) << " [" << b << ", " << e << ")";
      }
  }
}

TEST(ShardMap, PaddingRowsAreClipped) {
  // A [8, 3] table stored as [6, 3]; part 1 of 2 holds rows 4..7, of which 4 and 5 are stored.
  ShardRule r{{8, 3}, {}, 0, 2, 1};
  auto ps = pieces(r, {6, 3}, 0, 12);
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].local_offset, 0);
  EXPECT_EQ(ps[0].numel, 6);
  EXPECT_EQ(ps[0].slab.start, (Dims{4, 0}));
  EXPECT_EQ(ps[0].slab.block, (Dims{2, 3}));
  // A sub-range that lies wholly in the padding has no pieces; one that straddles is cut.
  EXPECT_TRUE(pieces(r, {6, 3}, 7, 12).empty());
  auto cut = pieces(r, {6, 3}, 4, 9);
  int64_t total = 0;
  for (const Piece& p : cut) total += p.numel;
  EXPECT_EQ(total, 2);  // local elements 4 and 5 (row 5, columns 1 and 2)
}

TEST(ShardMap, ErrorsNameTheShapes) {
  auto msg = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg([] { pieces({{12, 4}, {2, 8, 3}, 1, 1, 0}, {12, 4}, 0, 1); }).find("does not refine"),
            std::string::npos);
  EXPECT_NE(msg([] { pieces({{4, 4}, {}, 1, 2, 0}, {4, 4}, 0, 9); }).find("outside the part's 8 elements"),
            std::string::npos);
  EXPECT_NE(msg([] { pieces({{4, 4}, {}, -1, 1, 0}, {4, 3}, 0, 1); }).find("only by fewer rows"),
            std::string::npos);
  EXPECT_NE(msg([] { local_numel({{6, 4}, {}, 0, 4, 0}); }).find("does not split into 4 parts"), std::string::npos);
}

}  // namespace
}  // namespace tandem::ckpt
