// Multi-rank tests of the NCCL communicator's own stream and of batch_isend_irecv over NCCL
// (run under mpirun -np N on a node with at least N GPUs; -np 1 runs a real NCCL communicator of
// one rank). Skipped, on every rank alike, in a CPU build or where some rank has no GPU of its
// own. Checked through host copies: the comm stream's ordering against the compute stream, the
// keep-alive of a non-blocking operation's tensors under the caching allocator, and sends and
// receives both ways at once with messages far past NCCL's buffers.
#include <gtest/gtest.h>

#include "tests/parallel/mpi/mpi_test_util.h"

#ifdef TANDEM_HAVE_CUDA
#include "kernels/matmul.h"
#include "parallel/cuda/nccl_communicator.h"
#include "tests/parallel/mpi/device_test_util.h"
#endif

namespace tandem {
namespace {

#ifdef TANDEM_HAVE_CUDA

using testing::device_backend_or_null;
using testing::to_device;
using testing::to_host;

// The comm stream waits for the compute stream's work queued before the call (a GEMM that
// writes the input), and the operation keeps its input alive: dropped at once and followed by an
// allocation of the same size that the compute stream overwrites, it must still be gathered
// intact (the caching allocator would hand a freed block straight back).
TEST(NcclStreamN, CommStreamFollowsComputeAndKeepsTensorsAlive) {
  auto be = device_backend_or_null();
  if (!be) GTEST_SKIP() << "needs one GPU per rank";
  auto c = make_nccl_communicator(MPI_COMM_WORLD, "nccl-order", 60.0, *be->cuda());
  const int r = c->rank(), n = c->size();
  const int64_t d = 4096;  // a GEMM of ~1 ms on an H200: long enough to lose a race
  Tensor a = to_device(*be, testing::host_f32(std::vector<float>(d * d, 1.f)));
  Tensor b = to_device(*be, testing::host_f32(std::vector<float>(d * d, static_cast<float>(r + 1))));
  Tensor out = be->empty({n * d * d}, DType::F32);
  std::unique_ptr<Request> q;
  {
    Tensor prod = to_device(*be, testing::host_f32(std::vector<float>(d * d, -1.f)));
    be->synchronize();
    kernels::matmul(*be, prod, a, false, b, false);  // every element: d * (r + 1)
    q = c->iall_gather(out, prod);
  }  // prod's last reference is the operation's
  Tensor other = be->empty({d * d}, DType::F32);
  be->zero(other);
  kernels::matmul(*be, other, a, false, a, false);
  q->wait();
  Tensor host = to_host(*be, out);
  for (int k = 0; k < n; ++k)
    for (int64_t i : {int64_t{0}, d * d / 2, d * d - 1})
      ASSERT_EQ(host.f32()[k * d * d + i], static_cast<float>(d * (k + 1))) << "slice " << k << " i " << i;
  // The compute stream follows the operation after wait(): a kernel queued now reads the result.
  Tensor sum = be->empty({d * d}, DType::F32);
  be->copy(sum, out.flat_range(static_cast<int64_t>(r) * d * d, {d * d}));
  EXPECT_EQ(to_host(*be, sum).f32()[d], static_cast<float>(d * (r + 1)));
  auto none = c->batch_isend_irecv({});
  EXPECT_TRUE(none->test());
}

// Both directions of a ring at once, 24 MiB per message (NCCL_BUFFSIZE is 4 MiB): one NCCL
// group per rank, which would deadlock as separate send-then-receive groups on one stream.
TEST(NcclStreamN, BatchSendsAndReceivesBothWaysAtOnce) {
  auto be = device_backend_or_null();
  if (!be) GTEST_SKIP() << "needs one GPU per rank";
  const int n = testing::world_size();
  if (n < 2) GTEST_SKIP() << "needs a peer (NCCL sends to other ranks only): run with -np >= 2";
  auto c = make_nccl_communicator(MPI_COMM_WORLD, "nccl-batch", 60.0, *be->cuda());
  const int r = c->rank();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  const int64_t len = int64_t{6} << 20;
  auto pattern = [&](int from, int to) {
    std::vector<float> v(len);
    for (int64_t i = 0; i < len; ++i) v[i] = static_cast<float>(from * 100000 + to * 1000 + i % 997);
    return v;
  };
  Tensor fwd = to_device(*be, testing::host_f32(pattern(r, next)));
  Tensor bwd = to_device(*be, testing::host_f32(pattern(r, prev)));
  Tensor from_prev = be->empty({len}, DType::F32), from_next = be->empty({len}, DType::F32);
  c->reset_stats();
  // With n = 2, next == prev: the pair's two messages match in the order posted per direction,
  // so every rank lists the forward message before the backward one, sending and receiving.
  const std::vector<P2POp> ops = {P2POp::send(fwd, next, 1), P2POp::recv(from_prev, prev, 1),
                                  P2POp::send(bwd, prev, 2), P2POp::recv(from_next, next, 2)};
  c->batch_isend_irecv(ops)->wait();
  Tensor hp = to_host(*be, from_prev), hn = to_host(*be, from_next);
  const std::vector<float> ep = pattern(prev, r), en = pattern(next, r);
  for (int64_t i : {int64_t{0}, int64_t{1}, len / 3, len - 1}) {
    ASSERT_EQ(hp.f32()[i], ep[i]) << "from prev, i " << i;
    ASSERT_EQ(hn.f32()[i], en[i]) << "from next, i " << i;
  }
  EXPECT_EQ(c->stats().calls, 4);
  EXPECT_EQ(c->stats().bytes, 2 * len * 4);
}

#else

TEST(NcclStreamN, NeedsACudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tandem
