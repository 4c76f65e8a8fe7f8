// The checkpoint map without I/O: for every layout of the layout-equivalence test (and a few
// more), the writes the ranks own cover every element of every stored tensor exactly once, for
// the weights and for the optimizer state (with and without ZeRO-1), and every hyperslab
// element is the logical element the local buffer holds there. Also: the catalogue lists the
// whole model whatever the layout, each stage registers only catalogue tensors with their
// logical shapes, and the embedding is stored without its vocabulary padding.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "parallel/pipeline_schedule.h"
#include "runtime/model/gpt.h"
#include "runtime/model/param_catalogue.h"
#include "runtime/train/checkpoint_plan.h"
#include "runtime/train/grad_sync.h"
#include "runtime/train/trainer.h"

namespace tandem {
namespace {

struct Layout {
  const char* name;
  int dp, tp, pp, chunks, zero;
};

// The layout-equivalence test's layouts (tests/e2e/layout_equivalence_test.sh), then more.
const Layout kLayouts[] = {
    {"base", 1, 1, 1, 1, 0},       {"dp2", 2, 1, 1, 1, 1},        {"tp2", 1, 2, 1, 1, 0},
    {"pp2", 1, 1, 2, 1, 0},        {"pp4", 1, 1, 4, 1, 0},        {"dp2tp2", 2, 2, 1, 1, 1},
    {"dp2pp2", 2, 1, 2, 1, 0},     {"tp2pp2", 1, 2, 2, 1, 0},     {"dp2tp2pp2", 2, 2, 2, 1, 1},
    {"pp2x2", 1, 1, 2, 2, 0},      {"dp3zero1", 3, 1, 1, 1, 1},   {"tp4", 1, 4, 1, 1, 0},
    {"dp2pp2x2zero1", 2, 1, 2, 2, 1}, {"dp2zero0", 2, 1, 1, 1, 0},
};

ModelOptions small_model() {
  ModelOptions m;
  m.layers = 4;
  m.dim = 32;
  m.heads = 4;
  m.vocab = 1000;  // padded to 1024: tp shards of the last rank reach into the padding
  m.seq_len = 16;
  return m;
}

struct Coverage {
  std::map<std::string, std::vector<int>> count;  // per stored tensor, writes per element
  explicit Coverage(const std::vector<CatalogueEntry>& cat) {
    for (const auto& e : cat) count[e.name].assign(static_cast<size_t>(ckpt::dims_numel(e.shape)), 0);
  }
};

// Marks the elements of p's local range [b, e) in `cov` and checks each against the logical
// index the local buffer holds there.
void mark(Coverage& cov, const Param& p, int64_t b, int64_t e, const std::string& where) {
  const Shape& stored = stored_shape(p.spec);
  auto& cnt = cov.count.at(p.spec.name);
  int64_t next = b;
  for (const ckpt::Piece& piece : ParamStore::pieces(p, b, e)) {
    ASSERT_GE(piece.local_offset, next) << where << " " << p.spec.name << ": pieces out of order";
    ASSERT_EQ(piece.numel, piece.slab.numel()) << where << " " << piece.slab.str();
    const std::vector<int64_t> idx = ckpt::slab_indices(piece.slab, stored);
    ASSERT_EQ(static_cast<int64_t>(idx.size()), piece.numel);
    for (int64_t k = 0; k < piece.numel; ++k) {
      // Stored and logical shapes share every dimension but the row count, so the flat
      // index of a stored element equals its logical flat index.
      ASSERT_EQ(idx[k], ParamStore::logical_index(p, piece.local_offset + k))
          << where << " " << p.spec.name << " local " << piece.local_offset + k << " " << piece.slab.str();
      ASSERT_LT(idx[k], static_cast<int64_t>(cnt.size()));
      cnt[static_cast<size_t>(idx[k])] += 1;
    }
    next = piece.local_offset + piece.numel;
  }
  ASSERT_LE(next, e);
}

void expect_once(const Coverage& cov, const std::string& what) {
  for (const auto& [name, cnt] : cov.count)
    for (size_t i = 0; i < cnt.size(); ++i)
      ASSERT_EQ(cnt[i], 1) << what << ": element " << i << " of " << name << " written " << cnt[i] << " times";
}

TEST(CheckpointPlan, OwnedWritesCoverEveryElementExactlyOnceInEveryLayout) {
  const ModelOptions opt = small_model();
  const auto cat = param_catalogue(opt);
  auto be = make_cpu_backend(1);
  const int64_t bucket = 1000;  // small buckets: ZeRO slices cut through parameters
  for (const Layout& L : kLayouts) {
    SCOPED_TRACE(L.name);
    Coverage weights(cat), state(cat);
    std::set<std::string> seen;
    const int vstages = L.pp * L.chunks;
    for (int d = 0; d < L.dp; ++d)
      for (int t = 0; t < L.tp; ++t)
        for (int p = 0; p < L.pp; ++p)
          for (int c = 0; c < L.chunks; ++c) {
            const int v = virtual_stage(L.pp, p, c);
            auto [first, count] = stage_layers(opt.layers, vstages, v);
            StageLayout stage{first, count, v == 0, v == vstages - 1};
            ParamStore store(*be);
            for (ParamSpec& s : Gpt::stage_specs(opt, stage, L.tp, t)) store.add(std::move(s));
            const int64_t total = (store.numel() + L.dp - 1) / L.dp * L.dp;
            const auto owned = GradSync::owned_ranges(store, total, L.dp, d, L.zero, bucket);
            const auto views = AdamWOptimizer::views_of(store, owned);
            const std::string where = fmt::format("{} rank dp{} tp{} pp{} chunk{}", L.name, d, t, p, c);
            for (const OwnedRange& o : owned_param_writes(store, d, L.dp))
              mark(weights, store.at(o.param), o.begin, o.end, where);
            for (const OwnedRange& o : owned_state_writes(store, views, L.zero, d, L.dp)) {
              mark(state, store.at(o.param), o.begin, o.end, where);
              // The packed position must be inside the view that holds the range.
              bool inside = false;
              for (const auto& vw : views)
                inside |= vw.param == o.param && o.begin >= vw.begin && o.end <= vw.end &&
                          o.packed == vw.packed + (o.begin - vw.begin);
              ASSERT_TRUE(inside) << where << " state range of " << store.at(o.param).spec.name;
            }
            for (const Param& prm : store.all()) seen.insert(prm.spec.name);
          }
    expect_once(weights, "weights");
    expect_once(state, "optimizer state");
    EXPECT_EQ(seen.size(), cat.size()) << "the stages together hold every catalogue tensor";
  }
}

TEST(CheckpointPlan, CatalogueIsTheWholeModelWithUnpaddedEmbedding) {
  const ModelOptions opt = small_model();
  const auto cat = param_catalogue(opt);
  ASSERT_EQ(cat.size(), 2u + 12u * opt.layers + 2u);
  EXPECT_EQ(cat.front().name, "wte");
  EXPECT_EQ(cat.front().path, "wte/weight");
  EXPECT_EQ(cat.front().shape, (Shape{1000, 32}));
  EXPECT_EQ(cat.front().logical, (Shape{1024, 32}));
  std::map<std::string, CatalogueEntry> by_name;
  for (const auto& e : cat) by_name[e.name] = e;
  EXPECT_EQ(by_name.at("h.3.attn.qkv.w").path, "blocks/3/attn/qkv/weight");
  EXPECT_EQ(by_name.at("h.3.attn.qkv.w").shape, (Shape{96, 32}));
  EXPECT_EQ(by_name.at("h.0.mlp.proj.b").path, "blocks/0/mlp/proj/bias");
  EXPECT_EQ(by_name.at("lnf.w").path, "lnf/weight");
  EXPECT_EQ(by_name.at("wpe").shape, (Shape{16, 32}));
  // Every stage of every layout registers catalogue tensors only, with the same logical shape.
  for (int tp : {1, 2, 4})
    for (int vst : {1, 2, 4})
      for (int v = 0; v < vst; ++v) {
        auto [first, count] = stage_layers(opt.layers, vst, v);
        for (const ParamSpec& s : Gpt::stage_specs(opt, {first, count, v == 0, v == vst - 1}, tp, tp - 1)) {
          ASSERT_TRUE(by_name.count(s.name)) << s.name;
          EXPECT_EQ(s.logical, by_name.at(s.name).logical) << s.name;
          EXPECT_EQ(stored_shape(s), by_name.at(s.name).shape) << s.name;
        }
      }
}

TEST(CheckpointPlan, TiedEmbeddingCopyAndTpReplicasDoNotWrite) {
  const ModelOptions opt = small_model();
  auto be = make_cpu_backend(1);
  // The head stage of pp=2 holds a tied copy of wte: it never writes it.
  ParamStore head(*be);
  for (ParamSpec& s : Gpt::stage_specs(opt, {2, 2, false, true}, 1, 0)) head.add(std::move(s));
  for (const OwnedRange& o : owned_param_writes(head, 0, 1)) EXPECT_NE(head.at(o.param).spec.name, "wte");
  // tp rank 1 writes its shards of sharded weights but no replicated LayerNorm or bias.
  ParamStore r1(*be);
  for (ParamSpec& s : Gpt::stage_specs(opt, {0, 4, true, true}, 2, 1)) r1.add(std::move(s));
  std::set<std::string> written;
  for (const OwnedRange& o : owned_param_writes(r1, 0, 1)) written.insert(r1.at(o.param).spec.name);
  EXPECT_TRUE(written.count("h.0.attn.qkv.w"));
  EXPECT_TRUE(written.count("wte"));
  EXPECT_FALSE(written.count("h.0.ln1.w"));
  EXPECT_FALSE(written.count("h.0.attn.proj.b"));
  EXPECT_FALSE(written.count("lnf.b"));
}

}  // namespace
}  // namespace tandem
