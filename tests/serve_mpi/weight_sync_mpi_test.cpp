// WeightSync under mpirun (test_serve_mpi, run at np 3 and 4): the world is split into
// trainers and servers of different parallel layouts; the trainers' weights (initialised from
// one seed) reach the servers (initialised from another) resharded, bitwise equal to the
// serving layout initialised from the trainers' seed; a second version follows through
// poll() and flip(); the announcements arrive; a server of another model makes every rank
// throw before any transfer.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "parallel/mesh.h"
#include "runtime/core/backend.h"
#include "runtime/core/error.h"
#include "runtime/model/model_replica.h"
#include "runtime/model/param_store.h"
#include "serve/weight_sync.h"

namespace tandem::serve {
namespace {

struct Layout {
  int dp = 1, tp = 1, pp = 1;
  int size() const { return dp * tp * pp; }
};

struct Case {
  Layout train, serve;
  const char* name;
};

ModelOptions small_model(int layers = 4) {
  ModelOptions m;
  m.layers = layers;
  m.dim = 64;
  m.heads = 4;
  m.vocab = 300;  // padded to 384: the padding rows are never sent
  m.seq_len = 32;
  return m;
}

ParallelOptions par(const Layout& l) {
  ParallelOptions p;
  p.dp = l.dp;
  p.tp = l.tp;
  p.pp = l.pp;
  p.timeout_s = 60;
  return p;
}

// "" when every stored element of every parameter is bitwise equal (the vocabulary padding
// rows are never stored, so never sent), else the first difference.
std::string first_difference(ModelReplica& a, ModelReplica& b) {
  for (int c = 0; c < a.num_chunks(); ++c) {
    const float* x = a.chunk(c).params().values().f32();
    const float* y = b.chunk(c).params().values().f32();
    for (const Param& p : a.chunk(c).params().all())
      for (const ckpt::Piece& piece : ParamStore::pieces(p))
        for (int64_t i = piece.local_offset; i < piece.local_offset + piece.numel; ++i)
          if (std::memcmp(x + p.offset + i, y + p.offset + i, 4) != 0)
            return p.spec.name + " local element " + std::to_string(i) + ": " + std::to_string(x[p.offset + i]) +
                   " vs " + std::to_string(y[p.offset + i]);
  }
  return "";
}

int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

void run_case(const Case& c) {
  const int n = world_size(), me = world_rank();
  ASSERT_EQ(c.train.size() + c.serve.size(), n) << c.name;
  const bool trains = me < c.train.size();
  MPI_Comm part;
  MPI_Comm_split(MPI_COMM_WORLD, trains ? 0 : 1, me, &part);
  auto be = make_cpu_backend(1);
  const Layout l = trains ? c.train : c.serve;
  const ModelOptions model = small_model();
  {
    Mesh mesh(part, l.dp, l.tp, l.pp, "tp-dp-pp", DeviceKind::CPU, 60);
    ModelReplica replica(*be, mesh, model, par(l), 1);
    replica.init(trains ? 11 : 99);
    const bool sender = trains && mesh.dp_rank() == 0;
    const bool leader = !trains && mesh.tp_rank() == 0 && mesh.pp_rank() == 0;
    WeightSync sync(MPI_COMM_WORLD, trains ? (sender ? SyncRole::Sender : SyncRole::Idle) : SyncRole::Receiver,
                    trains && !sender ? nullptr : &replica, leader, 60);
    if (sync.role() != SyncRole::Idle) {
      EXPECT_GT(sync.stats().bytes_per_sync, 0) << c.name << " rank " << me;
    }
    if (trains) {
      if (sender) {
        EXPECT_TRUE(sync.all_senders_ready());
        sync.post(7);
        sync.wait_sent();
        replica.init(12);  // the next version
        EXPECT_TRUE(sync.all_senders_ready());
        sync.post(8);
        sync.announce(8, true);
        sync.wait_sent();
      }
    } else {
      ModelReplica ref(*be, mesh, model, par(l), 1);
      ref.init(11);
      EXPECT_NE(first_difference(replica, ref), "") << c.name;
      sync.flip();
      EXPECT_EQ(replica.weights_version(), 7);
      EXPECT_EQ(first_difference(replica, ref), "") << c.name << ": version 7 on serving rank " << me;
      int64_t v = -1;
      for (int i = 0; i < 200000 && v < 0; ++i) v = sync.poll();
      EXPECT_EQ(v, 8) << c.name;
      sync.flip();
      ref.init(12);
      EXPECT_EQ(replica.weights_version(), 8);
      EXPECT_EQ(first_difference(replica, ref), "") << c.name << ": version 8 on serving rank " << me;
      if (leader) {
        WeightSync::Announcement a;
        bool got = false;
        for (int i = 0; i < 200000 && !(got && a.final); ++i) got = sync.poll_announcement(&a) || got;
        EXPECT_TRUE(got && a.final) << c.name;
        EXPECT_EQ(a.version, 8);
      }
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  MPI_Comm_free(&part);
}

TEST(WeightSyncMpi, ReshardsBetweenLayouts) {
  std::vector<Case> cases;
  if (world_size() == 3) {
    cases = {{{1, 2, 1}, {1, 1, 1}, "tp2 -> 1 rank"},
             {{1, 1, 1}, {1, 2, 1}, "1 rank -> tp2"},
             {{1, 1, 2}, {1, 1, 1}, "pp2 -> 1 rank (tied embedding on two stages)"},
             {{1, 1, 1}, {2, 1, 1}, "1 rank -> two replicas"}};
  } else if (world_size() == 4) {
    cases = {{{1, 2, 1}, {1, 1, 2}, "tp2 -> pp2"},
             {{2, 1, 1}, {1, 2, 1}, "dp2 -> tp2 (dp 1 idle)"},
             {{1, 1, 2}, {2, 1, 1}, "pp2 -> two replicas"},
             {{1, 1, 1}, {1, 1, 3}, "1 rank -> pp3"},
             {{1, 2, 1}, {1, 2, 1}, "tp2 -> tp2"}};
  } else {
    GTEST_SKIP() << "needs 3 or 4 ranks, has " << world_size();
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    run_case(c);
  }
}

TEST(WeightSyncMpi, AnotherModelFailsOnEveryRankBeforeAnyTransfer) {
  const int n = world_size(), me = world_rank();
  if (n < 2) GTEST_SKIP() << "needs 2 ranks";
  const bool trains = me == 0;
  MPI_Comm part;
  MPI_Comm_split(MPI_COMM_WORLD, trains ? 0 : 1, me, &part);
  auto be = make_cpu_backend(1);
  {
    const Layout l = trains ? Layout{} : Layout{1, 1, n - 1};
    Mesh mesh(part, l.dp, l.tp, l.pp, "tp-dp-pp", DeviceKind::CPU, 60);
    ModelReplica replica(*be, mesh, small_model(trains ? 4 : 5), par(l), 1);  // servers: 5 layers
    std::string what;
    try {
      WeightSync sync(MPI_COMM_WORLD, trains ? SyncRole::Sender : SyncRole::Receiver, &replica,
                      !trains && mesh.pp_rank() == 0, 60);
    } catch (const Error& e) {
      what = e.what();
    }
    EXPECT_FALSE(what.empty()) << "rank " << me << " did not throw";
    EXPECT_NE(what.find("same model"), std::string::npos) << what;
  }
  MPI_Comm_free(&part);
}

}  // namespace
}  // namespace tandem::serve
