// Multi-rank tests of the NCCL communicator and a CUDA Mesh (run under mpirun -np N on a node
// with at least N GPUs). Skipped, on every rank alike, in a CPU build or where some rank has no
// GPU of its own. Results are checked through host copies against closed forms. One test runs
// wherever every rank sees a GPU, shared or not: a CUDA Mesh with parallel.device_comm auto
// picks NCCL for distinct GPUs and the staged communicator for shared ones (the single-GPU
// machine), and nccl refuses the shared case on every rank.
#include <gtest/gtest.h>

#include <chrono>

#include "tests/parallel/mpi/mpi_test_util.h"

#ifdef TANDEM_HAVE_CUDA
#include "parallel/cuda/nccl_communicator.h"
#include "parallel/mesh.h"
#include "runtime/core/cuda/cuda_context.h"
#include "tests/parallel/mpi/device_test_util.h"
#endif

namespace tandem {
namespace {

#ifdef TANDEM_HAVE_CUDA

using testing::device_backend_or_null;
using testing::to_device;
using testing::to_host;

TEST(NcclCommunicatorN, CollectivesAndRing) {
  auto be = device_backend_or_null();
  if (!be) GTEST_SKIP() << "needs one GPU per rank";
  auto c = make_nccl_communicator(MPI_COMM_WORLD, "nccl-world", 60.0, *be->cuda());
  const int r = c->rank(), n = c->size();
  Tensor a = to_device(*be, testing::host_f32({1.f + r, 2.f}));
  c->all_reduce(a);
  EXPECT_EQ(testing::values<float>(to_host(*be, a)),
            (std::vector<float>{static_cast<float>(n + n * (n - 1) / 2), 2.f * n}));
  Tensor m = to_device(*be, testing::host_i32({r, -r}));
  c->all_reduce(m, ReduceOp::Max);
  EXPECT_EQ(testing::values<int32_t>(to_host(*be, m)), (std::vector<int32_t>{n - 1, 0}));

  std::vector<float> v(2 * n);
  for (int j = 0; j < 2 * n; ++j) v[j] = static_cast<float>(j);
  Tensor in = to_device(*be, testing::host_f32(v));
  Tensor out = be->empty({2}, DType::F32);
  c->reduce_scatter(out, in);
  EXPECT_EQ(testing::values<float>(to_host(*be, out)),
            (std::vector<float>{static_cast<float>(n * 2 * r), static_cast<float>(n * (2 * r + 1))}));

  Tensor g = be->empty({n}, DType::I32);
  Tensor mine = to_device(*be, testing::host_i32({10 * r}));
  auto q = c->iall_gather(g, mine);
  q->wait();
  for (int k = 0; k < n; ++k) EXPECT_EQ(to_host(*be, g).i32()[k], 10 * k);

  for (int root = 0; root < n; ++root) {
    Tensor b = to_device(*be, testing::host_i32({r == root ? 100 + root : -1}));
    c->broadcast(b, root);
    EXPECT_EQ(to_host(*be, b).i32()[0], 100 + root);
  }
  if (n >= 2) {
    // A ring: every rank sends and receives, so both go in one group (as separate operations
    // on one stream, each rank's receive would wait behind its own send, or the reverse).
    Tensor s = to_device(*be, testing::host_f32({static_cast<float>(r)}));
    Tensor t = be->empty({1}, DType::F32);
    c->batch_isend_irecv({P2POp::recv(t, (r + n - 1) % n, 0), P2POp::send(s, (r + 1) % n, 0)})->wait();
    EXPECT_EQ(to_host(*be, t).f32()[0], static_cast<float>((r + n - 1) % n));
    // One direction (rank 0 -> 1) with the single non-blocking calls.
    Tensor u = be->empty({1}, DType::F32);
    if (r == 0) c->isend(s, 1, 3)->wait();
    if (r == 1) {
      auto q = c->irecv(u, 0, 3);
      q->wait();
      EXPECT_EQ(to_host(*be, u).f32()[0], 0.f);
    }
  }
  c->barrier();
  EXPECT_GT(c->stats().bytes, 0);
}

TEST(NcclCommunicatorN, MeshOnCudaGroups) {
  auto be = device_backend_or_null();
  if (!be) GTEST_SKIP() << "needs one GPU per rank";
  const int n = testing::world_size();
  Mesh mesh(MPI_COMM_WORLD, 1, n, 1, "tp-dp-pp", DeviceKind::CUDA, 60.0, be.get(),
            DeviceComm::Nccl);
  EXPECT_EQ(mesh.group_comm(), GroupComm::Nccl);
  Tensor t = to_device(*be, testing::host_i32({mesh.tp_rank()}));
  mesh.tp().all_reduce(t);
  EXPECT_EQ(to_host(*be, t).i32()[0], n * (n - 1) / 2);
}

// Assumes the ranks run on one node without per-rank CUDA_VISIBLE_DEVICES (as under the GPU
// kit and CI): ranks share a GPU exactly when the node has fewer GPUs than ranks.
TEST(CudaMeshN, PicksStagedWhenRanksShareAGpu) {
  Backend* be = testing::shared_gpu_backend();
  if (!be) GTEST_SKIP() << "needs a GPU on every rank (shared or not)";
  const int n = testing::world_size(), r = testing::world_rank();
  const bool shared = testing::local_size() > cuda_device_count();
  Mesh mesh(MPI_COMM_WORLD, 1, n, 1, "tp-dp-pp", DeviceKind::CUDA, 60.0, be, DeviceComm::Auto);
  EXPECT_EQ(mesh.group_comm(), shared ? GroupComm::Staged : GroupComm::Nccl);
  Tensor t = to_device(*be, testing::host_f32({1.f + r, -1.f * r}));
  mesh.tp().all_reduce(t);
  EXPECT_EQ(testing::values<float>(to_host(*be, t)),
            (std::vector<float>{static_cast<float>(n + n * (n - 1) / 2),
                                -static_cast<float>(n * (n - 1) / 2)}));
  if (n >= 2) {  // a ring of blocking point-to-point calls: even ranks send first
    Tensor s = to_device(*be, testing::host_i32({100 + r}));
    Tensor got = be->empty({1}, DType::I32);
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    if (r % 2 == 0) {
      mesh.tp().send(s, next, 3);
      mesh.tp().recv(got, prev, 3);
    } else {
      mesh.tp().recv(got, prev, 3);
      mesh.tp().send(s, next, 3);
    }
    EXPECT_EQ(to_host(*be, got).i32()[0], 100 + prev);
  }
  if (shared) {
    EXPECT_THROW(Mesh(MPI_COMM_WORLD, 1, n, 1, "tp-dp-pp", DeviceKind::CUDA, 60.0, be,
                      DeviceComm::Nccl),
                 ConfigError);
  }
  mesh.world().barrier();
}

TEST(NcclCommunicatorN, WatchdogAbortsAStuckRecv) {
  auto be = device_backend_or_null();
  if (!be) GTEST_SKIP() << "needs one GPU per rank";
  const int n = testing::world_size();
  if (n < 2) GTEST_SKIP() << "needs a peer";
  auto c = make_nccl_communicator(MPI_COMM_WORLD, "nccl-watchdog", 1.0, *be->cuda());
  Tensor t = be->empty({4}, DType::F32);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    c->recv(t, (c->rank() + 1) % n, 0);  // nobody sends
    FAIL() << "recv returned";
  } catch (const TimeoutError& e) {
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(waited, 5.0);
    EXPECT_NE(std::string(e.what()).find("'nccl-watchdog'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ncclCommAbort"), std::string::npos) << e.what();
  }
  EXPECT_THROW(c->barrier(), Error);
  be->synchronize();  // the aborted kernels have left the stream
}

#else

TEST(NcclCommunicatorN, NeedsACudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tandem
