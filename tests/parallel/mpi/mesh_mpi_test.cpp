// Multi-rank tests of the Mesh (run under mpirun -np N): for every dp x tp x pp factorisation
// of N and every order, coordinates form a bijection, and each group holds exactly the expected
// world ranks (checked by all_gathering world ranks inside the group); embedding groups; and
// the ConfigError of a layout that does not match the job.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <set>

#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem {
namespace {

using testing::host_i32;
using testing::values;

constexpr double kTimeout = 30.0;

struct Layout {
  int dp, tp, pp;
  std::string order;
};

std::vector<Layout> layouts_for(int n) {
  const std::vector<std::string> orders = {"tp-dp-pp", "dp-tp-pp", "pp-dp-tp",
                                           "tp-pp-dp", "dp-pp-tp", "pp-tp-dp"};
  std::vector<Layout> out;
  for (int dp = 1; dp <= n; ++dp)
    for (int tp = 1; tp <= n; ++tp)
      for (int pp = 1; pp <= n; ++pp)
        if (dp * tp * pp == n)
          for (const auto& o : orders) out.push_back({dp, tp, pp, o});
  return out;
}

// Coordinates of world rank r, decoded independently of Mesh: axis names fastest first.
std::array<int, 3> decode(const Layout& l, int r) {
  const std::array<int, 3> size{l.dp, l.tp, l.pp};
  auto idx = [](const std::string& s) { return s == "dp" ? 0 : s == "tp" ? 1 : 2; };
  const std::array<int, 3> order{idx(l.order.substr(0, 2)), idx(l.order.substr(3, 2)),
                                 idx(l.order.substr(6, 2))};
  std::array<int, 3> c{};
  for (int a : order) {
    c[a] = r % size[a];
    r /= size[a];
  }
  return c;
}

std::vector<int> gather_world_ranks(Communicator& g, int my_world_rank) {
  Tensor in = host_i32({my_world_rank});
  Tensor out = host_i32(std::vector<int32_t>(g.size(), -1));
  g.all_gather(out, in);
  return values<int32_t>(out);
}

void check_layout(const Layout& l) {
  SCOPED_TRACE(fmt::format("dp {} tp {} pp {} order {}", l.dp, l.tp, l.pp, l.order));
  const int n = testing::world_size(), me = testing::world_rank();
  Mesh mesh(MPI_COMM_WORLD, l.dp, l.tp, l.pp, l.order, DeviceKind::CPU, kTimeout);
  const std::array<int, 3> want = decode(l, me);
  ASSERT_EQ(mesh.dp_rank(), want[0]);
  ASSERT_EQ(mesh.tp_rank(), want[1]);
  ASSERT_EQ(mesh.pp_rank(), want[2]);
  ASSERT_EQ(mesh.rank_of(mesh.dp_rank(), mesh.tp_rank(), mesh.pp_rank()), me);
  ASSERT_EQ(mesh.world_size(), n);

  // Bijection: every rank's coordinates, gathered over the world, are distinct and rank_of
  // maps each back to its rank.
  Tensor mine = host_i32({mesh.dp_rank(), mesh.tp_rank(), mesh.pp_rank()});
  Tensor all = host_i32(std::vector<int32_t>(3 * n, -1));
  mesh.world().all_gather(all, mine);
  std::set<std::array<int, 3>> seen;
  for (int r = 0; r < n; ++r) {
    std::array<int, 3> c{all.i32()[3 * r], all.i32()[3 * r + 1], all.i32()[3 * r + 2]};
    EXPECT_TRUE(seen.insert(c).second) << "rank " << r << " repeats coordinates";
    EXPECT_EQ(mesh.rank_of(c[0], c[1], c[2]), r);
    EXPECT_EQ(c, decode(l, r));
  }

  // Groups: size, group rank == coordinate, members == the ranks sharing the other coordinates.
  EXPECT_EQ(mesh.world().size(), n);
  EXPECT_EQ(mesh.world().rank(), me);
  for (Axis a : {Axis::DP, Axis::TP, Axis::PP}) {
    Communicator& g = mesh.group(a);
    const int ai = static_cast<int>(a);
    EXPECT_EQ(g.size(), mesh.size(a)) << axis_name(a);
    EXPECT_EQ(g.rank(), mesh.coord(a)) << axis_name(a);
    std::vector<int> expected;
    for (int i = 0; i < mesh.size(a); ++i) {
      for (int r = 0; r < n; ++r) {
        std::array<int, 3> c = decode(l, r);
        bool same = true;
        for (int b = 0; b < 3; ++b)
          if (b != ai && c[b] != want[b]) same = false;
        if (same && c[ai] == i) expected.push_back(r);
      }
    }
    EXPECT_EQ(gather_world_ranks(g, me), expected) << axis_name(a) << " group " << g.name();
    EXPECT_EQ(mesh.members(a), expected) << axis_name(a);
  }
  EXPECT_EQ(&mesh.tp(), &mesh.group(Axis::TP));

  // Embedding: {first, last} stage with this rank's (dp, tp), only on the end stages.
  Communicator* emb = mesh.embedding();
  const bool end = mesh.pp_rank() == 0 || mesh.pp_rank() == l.pp - 1;
  if (l.pp == 1 || !end) {
    EXPECT_EQ(emb, nullptr);
  } else {
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->size(), 2);
    EXPECT_EQ(emb->rank(), mesh.pp_rank() == 0 ? 0 : 1);
    const std::vector<int> ends = {mesh.rank_of(want[0], want[1], 0),
                                   mesh.rank_of(want[0], want[1], l.pp - 1)};
    EXPECT_EQ(gather_world_ranks(*emb, me), ends);
    Tensor g = host_i32({1});
    emb->all_reduce(g);
    EXPECT_EQ(g.i32()[0], 2);
  }
}

TEST(MeshN, EveryFactorisationAndOrder) {
  for (const Layout& l : layouts_for(testing::world_size())) {
    check_layout(l);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(MeshN, DescribeNamesTheLayout) {
  const int n = testing::world_size(), me = testing::world_rank();
  Mesh mesh(MPI_COMM_WORLD, n, 1, 1, "tp-dp-pp", DeviceKind::CPU, kTimeout);
  EXPECT_EQ(mesh.describe(),
            fmt::format("dp {} x tp 1 x pp 1 (order tp-dp-pp): rank {} = dp {}, tp 0, pp 0", n, me, me));
  EXPECT_EQ(mesh.tp().name(), fmt::format("tp[dp{},pp0]", me));
}

TEST(MeshN, MismatchedWorldSizeIsAConfigErrorOnEveryRank) {
  const int n = testing::world_size();
  try {
    Mesh mesh(MPI_COMM_WORLD, 2, 2, n, "tp-dp-pp", DeviceKind::CPU, kTimeout);
    FAIL() << "a layout of " << 4 * n << " ranks was accepted by " << n;
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              fmt::format("parallel.dp * parallel.tp * parallel.pp = 2 * 2 * {} = {} but the job "
                          "has {} ranks", n, 4 * n, n));
  }
  EXPECT_THROW(Mesh(MPI_COMM_WORLD, n, 1, 1, "tp-dp", DeviceKind::CPU, kTimeout), ConfigError);
  EXPECT_THROW(Mesh(MPI_COMM_WORLD, n, 1, 1, "tp-tp-pp", DeviceKind::CPU, kTimeout), ConfigError);
  EXPECT_THROW(Mesh(MPI_COMM_WORLD, 0, 1, n, "tp-dp-pp", DeviceKind::CPU, kTimeout), ConfigError);
  // No rank entered a collective: the world is still in step.
  auto c = make_mpi_communicator(MPI_COMM_WORLD, "after-config-error", kTimeout);
  c->barrier();
}

TEST(MeshN, GroupsReduceIndependently) {
  const int n = testing::world_size();
  if (n % 2 != 0) GTEST_SKIP() << "needs an even world";
  Mesh mesh(MPI_COMM_WORLD, n / 2, 2, 1, "tp-dp-pp", DeviceKind::CPU, kTimeout);
  Tensor t = host_i32({mesh.world_rank()});
  mesh.tp().all_reduce(t);  // tp peers are consecutive ranks 2d, 2d+1
  EXPECT_EQ(t.i32()[0], 4 * mesh.dp_rank() + 1);
  Tensor d = host_i32({mesh.tp_rank()});
  mesh.dp().all_reduce(d, ReduceOp::Max);
  EXPECT_EQ(d.i32()[0], mesh.tp_rank());
}

// The device communicator decision is made on every rank from every rank's GPU key, so all
// agree; two ranks on one GPU make auto choose staged and nccl refuse on every rank.
TEST(MeshN, DeviceCommDecisionIsCollectiveAndAgreed) {
  const int n = testing::world_size(), me = testing::world_rank();
  const std::string own = fmt::format("node|0000:{:02x}:00.0", me);
  EXPECT_EQ(resolve_device_comm(MPI_COMM_WORLD, DeviceComm::Auto, own), DeviceComm::Nccl);
  EXPECT_EQ(resolve_device_comm(MPI_COMM_WORLD, DeviceComm::Nccl, own), DeviceComm::Nccl);
  if (n < 2) GTEST_SKIP() << "sharing needs two ranks";
  // The last two ranks share a GPU (one physical GPU for all ranks is the same case).
  const std::string shared = me == n - 1 ? fmt::format("node|0000:{:02x}:00.0", n - 2) : own;
  EXPECT_EQ(resolve_device_comm(MPI_COMM_WORLD, DeviceComm::Auto, shared), DeviceComm::Staged);
  EXPECT_EQ(resolve_device_comm(MPI_COMM_WORLD, DeviceComm::Staged, shared), DeviceComm::Staged);
  try {
    resolve_device_comm(MPI_COMM_WORLD, DeviceComm::Nccl, shared);
    FAIL() << "nccl accepted two ranks on one GPU";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(fmt::format("ranks {} and {} of the group would share one GPU (node|0000:{:02x}:00.0)",
                                 n - 2, n - 1, n - 2)),
              std::string::npos) << m;
    EXPECT_NE(m.find("parallel.device_comm: staged"), std::string::npos) << m;
  }
  auto c = make_mpi_communicator(MPI_COMM_WORLD, "after-device-comm", kTimeout);
  c->barrier();  // every rank threw alike: nobody is left in a collective
}

// parallel.device_comm staged on a CPU backend: every group stages through host copies and
// still reduces, gathers and passes messages like the MPI groups.
TEST(MeshN, StagedGroupsOnTheCpuBackend) {
  const int n = testing::world_size();
  if (n % 2 != 0) GTEST_SKIP() << "needs an even world";
  Mesh mesh(MPI_COMM_WORLD, n / 2, 2, 1, "tp-dp-pp", DeviceKind::CPU, kTimeout,
            &testing::host_backend(), DeviceComm::Staged);
  EXPECT_EQ(mesh.group_comm(), GroupComm::Staged);
  Tensor t = host_i32({mesh.world_rank()});
  mesh.tp().all_reduce(t);
  EXPECT_EQ(t.i32()[0], 4 * mesh.dp_rank() + 1);
  EXPECT_EQ(gather_world_ranks(mesh.dp(), mesh.world_rank()), mesh.members(Axis::DP));
  auto dup = mesh.duplicate(Axis::TP, "tp-dup");
  Tensor u = host_i32({1});
  dup->all_reduce(u);
  EXPECT_EQ(u.i32()[0], 2);
  Mesh plain(MPI_COMM_WORLD, n, 1, 1, "tp-dp-pp", DeviceKind::CPU, kTimeout,
             &testing::host_backend(), DeviceComm::Auto);
  EXPECT_EQ(plain.group_comm(), GroupComm::Mpi);
}

}  // namespace
}  // namespace tandem
