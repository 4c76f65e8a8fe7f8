// Multi-rank tests of the PipelineExecutor (run under mpirun -np N: one pipeline stage per
// rank): GPipe, 1F1B and interleaved schedules with activation messages of 20 MiB, five times
// NCCL's default buffer (NCCL_BUFFSIZE 4 MiB), must give the loss and every parameter gradient
// of the same model run by one rank. Over MPI on the CPU the match is bitwise (same kernels,
// same order), except for the tied embedding, whose two copies are summed; over NCCL it is within
// a tolerance, and those tests skip, on every rank alike, unless every rank has a GPU of its own
// and there are at least two ranks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "parallel/pipeline_transfers.h"
#include "runtime/model/model_replica.h"
#include "runtime/train/pipeline_executor.h"
#include "tests/parallel/mpi/mpi_test_util.h"

#ifdef TANDEM_HAVE_CUDA
#include "parallel/cuda/nccl_communicator.h"
#include "tests/parallel/mpi/device_test_util.h"
#endif

namespace tandem {
namespace {

constexpr int64_t kT = 16;
constexpr int kDim = 8;
// Rows of one micro-batch's activation message: 655360 x 8 floats = 20 MiB.
constexpr int64_t kRows = int64_t{5} << 17;
constexpr uint64_t kSeed = 11;

ModelOptions tiny_model(int layers) {
  ModelOptions m;
  m.layers = layers;
  m.dim = kDim;
  m.heads = 2;
  m.vocab = 96;
  m.seq_len = static_cast<int>(kT);
  return m;
}

void load_tokens(int mb, int32_t* in, int32_t* tg, int vocab) {
  for (int64_t i = 0; i < kRows; ++i) {
    in[i] = static_cast<int32_t>((static_cast<int64_t>(mb) * 7919 + i * 31 + 3) % vocab);
    tg[i] = static_cast<int32_t>((static_cast<int64_t>(mb) * 104729 + i * 17 + 5) % vocab);
  }
}

Tensor host_copy(Backend& be, const Tensor& t) {
  Tensor h = testing::host_backend().empty(t.shape(), t.dtype());
  be.copy(h, t);
  return h;
}

// Largest |a - b| over n elements relative to the largest |b| (summation-order differences
// are relative to the magnitudes summed, not to an element that cancels to near zero), and where.
std::pair<double, int64_t> worst_rel(const float* a, const float* b, int64_t n) {
  double top = 0.0, worst = 0.0;
  int64_t at = -1;
  for (int64_t i = 0; i < n; ++i) {
    top = std::max(top, std::fabs(static_cast<double>(b[i])));
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (d > worst || d != d) {
      worst = d;
      at = i;
    }
  }
  if (worst != worst) return {worst, at};
  return {worst == 0.0 ? 0.0 : worst / std::max(top, 1e-30), at};
}

// Runs `kind` with one stage per rank of `pp` over a model of one layer per virtual stage and
// compares with the same model on world rank 0 alone. `host` (MPI, over the world) carries the
// reference to every rank. exact: gradients and loss bitwise (else within tol).
void expect_matches_one_rank(Backend& be, Communicator& pp, Communicator& host, ScheduleKind kind,
                             int chunks, int M, bool exact, double tol = 1e-5) {
  const int S = pp.size(), s = pp.rank(), V = S * chunks;
  const ModelOptions opt = tiny_model(V);
  const int64_t b = kRows / kT;
  ASSERT_GE(kRows * kDim * 4, int64_t{20} << 20) << "messages must dwarf NCCL's 4 MiB buffers";
  auto tp = make_self_communicator("tp");
  const float scale = 1.0f / static_cast<float>(M * kRows);
  auto load = [&](int mb, int32_t* in, int32_t* tg) { load_tokens(mb, in, tg, opt.vocab); };

  // The pipeline.
  std::vector<std::unique_ptr<Gpt>> chunk_models;
  std::vector<Gpt*> ptrs;
  for (int c = 0; c < chunks; ++c) {
    const int v = virtual_stage(S, s, c);
    auto [first, count] = stage_layers(opt.layers, V, v);
    chunk_models.push_back(std::make_unique<Gpt>(be, opt, StageLayout{first, count, v == 0, v == V - 1},
                                                 *tp, Recompute::Full));
    chunk_models.back()->init(kSeed);
    ptrs.push_back(chunk_models.back().get());
  }
  std::vector<std::vector<Action>> lists;
  for (int r = 0; r < S; ++r) lists.push_back(make_schedule(kind, S, r, M, chunks));
  const TransferPlan plan = plan_transfers(lists, chunks)[s];
  PipelineExecutor exec(ptrs, pp, S, s);
  pp.reset_stats();
  const PipelineRunStats st = exec.run(lists[s], plan, M, b, kT, load, true, scale);
  if (S > 1) {
    EXPECT_GT(pp.stats().bytes, 0) << "no activation or gradient left this rank";
    EXPECT_EQ(pp.stats().bytes % (kRows * kDim * 4), 0) << "messages are whole activations";
  }

  // The reference: the whole model on world rank 0, broadcast to every rank (and kept for the
  // next test of the same model and micro-batches on this device).
  Gpt whole(be, opt, StageLayout{}, *tp, Recompute::Full);
  struct Reference {
    std::vector<float> grads;  // host values, not a Tensor: the cache outlives every backend
    double loss = 0.0;
  };
  static std::map<std::tuple<int, int, DeviceKind>, Reference> cache;
  const auto key = std::make_tuple(V, M, be.kind());
  if (!cache.count(key)) {
    double ref_loss = 0.0;
    if (host.rank() == 0) {
      whole.init(kSeed);
      auto self = make_self_communicator("pp-self");
      PipelineExecutor one({&whole}, *self, 1, 0);
      const std::vector<Action> all = make_schedule(ScheduleKind::GPipe, 1, 0, M, 1);
      ref_loss = one.run(all, plan_transfers({all}, 1)[0], M, b, kT, load, true, scale).loss_sum;
    }
    Tensor grads = host_copy(be, whole.params().grads());
    host.broadcast(grads, 0);
    Tensor loss_bits = testing::host_backend().empty({2}, DType::I32);
    std::memcpy(loss_bits.raw(), &ref_loss, sizeof(double));
    host.broadcast(loss_bits, 0);
    std::memcpy(&ref_loss, loss_bits.raw(), sizeof(double));
    cache[key] = {std::vector<float>(grads.f32(), grads.f32() + grads.numel()), ref_loss};
  }
  const std::vector<float>& ref = cache[key].grads;
  const double ref_loss = cache[key].loss;

  const std::string what = fmt::format("{} pp {} chunks {} M {}", schedule_name(kind), S, chunks, M);
  if (s == S - 1) {
    EXPECT_EQ(st.loss_tokens, M * kRows) << what;
    if (exact) EXPECT_EQ(st.loss_sum, ref_loss) << what;
    else EXPECT_NEAR(st.loss_sum, ref_loss, tol * std::fabs(ref_loss)) << what;
  }
  // Every parameter but the tied embedding: this rank's gradient against the reference's.
  Tensor wte_last;  // the head's copy of wte on the last stage (V > 1)
  for (Gpt* g : ptrs) {
    Tensor mine = host_copy(be, g->params().grads());
    for (const Param& p : g->params().all()) {
      if (p.spec.name == "wte" && V > 1) {
        if (g->stage().has_head) wte_last = mine.flat_range(p.offset, {p.numel});
        continue;
      }
      const Param& r = whole.params().get(p.spec.name);
      ASSERT_EQ(r.numel, p.numel) << p.spec.name;
      const auto [rel, at] = worst_rel(mine.f32() + p.offset, ref.data() + r.offset, p.numel);
      if (exact) EXPECT_EQ(rel, 0.0) << what << ": " << p.spec.name << " differs at " << at;
      else EXPECT_LE(rel, tol) << what << ": " << p.spec.name << " at " << at;
    }
  }
  if (V == 1) return;
  // The tied embedding: first stage's copy + last stage's copy == the reference's one gradient,
  // up to rounding: the embedding backward adds ~7000 tokens into each row, onto the head's
  // part in the reference but onto zero in the pipeline (observed ~4e-4 of the largest value).
  const Param& rw = whole.params().get("wte");
  Tensor last = testing::host_backend().empty({rw.numel}, DType::F32);
  if (s == S - 1) {
    if (S == 1) last = wte_last;
    else host.send(wte_last, 0, 71);
  }
  if (s == 0) {
    if (S > 1) host.recv(last, S - 1, 71);
    Tensor first_grads = host_copy(be, ptrs[0]->params().grads());
    const float* f = first_grads.f32() + ptrs[0]->params().get("wte").offset;
    std::vector<float> sum(rw.numel);
    for (int64_t i = 0; i < rw.numel; ++i) sum[i] = f[i] + last.f32()[i];
    const auto [rel, at] = worst_rel(sum.data(), ref.data() + rw.offset, rw.numel);
    EXPECT_LE(rel, 2e-3) << what << ": wte (first + last stage copies) at " << at;
  }
}

std::unique_ptr<Communicator> world(const std::string& name) {
  return make_mpi_communicator(MPI_COMM_WORLD, name, 300.0);
}

// ---------------------------------------------------------------- MPI, CPU

class PipelineExecutorMpi : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(1);
  std::unique_ptr<Communicator> pp = world("pp"), host = world("host");
};

TEST_F(PipelineExecutorMpi, GPipeMatchesOneRankBitwise) {
  expect_matches_one_rank(*be, *pp, *host, ScheduleKind::GPipe, 1, pp->size(), true);
}

TEST_F(PipelineExecutorMpi, OneFOneBMatchesOneRankBitwise) {
  expect_matches_one_rank(*be, *pp, *host, ScheduleKind::OneFOneB, 1, pp->size(), true);
}

TEST_F(PipelineExecutorMpi, InterleavedMatchesOneRankBitwise) {
  expect_matches_one_rank(*be, *pp, *host, ScheduleKind::Interleaved, 2, pp->size(), true);
}

// ---------------------------------------------------------------- NCCL, one GPU per rank

#ifdef TANDEM_HAVE_CUDA

class PipelineExecutorNccl : public ::testing::Test {
 protected:
  void SetUp() override {
    be = testing::device_backend_or_null();
    if (!be) GTEST_SKIP() << "needs one GPU per rank (NCCL refuses two ranks on one GPU)";
    if (testing::world_size() < 2) GTEST_SKIP() << "needs two ranks: run with -np >= 2";
    pp = make_nccl_communicator(MPI_COMM_WORLD, "pp-nccl", 300.0, *be->cuda());
  }
  std::unique_ptr<Backend> be;
  std::unique_ptr<Communicator> pp, host = world("host");
};

TEST_F(PipelineExecutorNccl, GPipeMatchesOneRank) {
  expect_matches_one_rank(*be, *pp, *host, ScheduleKind::GPipe, 1, pp->size(), false);
}

TEST_F(PipelineExecutorNccl, OneFOneBMatchesOneRank) {
  expect_matches_one_rank(*be, *pp, *host, ScheduleKind::OneFOneB, 1, pp->size(), false);
}

TEST_F(PipelineExecutorNccl, InterleavedMatchesOneRank) {
  expect_matches_one_rank(*be, *pp, *host, ScheduleKind::Interleaved, 2, pp->size(), false);
}

#else

TEST(PipelineExecutorNccl, NeedsACudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tandem
