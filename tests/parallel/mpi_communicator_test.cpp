// One-process tests of the MPI communicator (in test_parallel, without mpirun): a group of one
// built on MPI_COMM_SELF behaves as the identity, checks sizes, counts bytes, and its watchdog
// turns a receive that nobody sends into a TimeoutError. Multi-rank tests: tests/parallel/mpi/.
#include <gtest/gtest.h>

#include <chrono>

#include "parallel/mpi_communicator.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem {
namespace {

using testing::host_f32;
using testing::host_i32;
using testing::values;

const auto* const kFinalize =
    ::testing::AddGlobalTestEnvironment(new testing::MpiFinalizeEnvironment);

class MpiSelf : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::ensure_mpi();
    comm = make_mpi_communicator(MPI_COMM_SELF, "self-group", 10.0);
  }
  std::unique_ptr<Communicator> comm;
};

TEST_F(MpiSelf, GroupOfOneIsTheIdentity) {
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->name(), "self-group");
  Tensor t = host_f32({1.f, -2.f});
  comm->all_reduce(t);
  comm->all_reduce(t, ReduceOp::Max);
  EXPECT_EQ(values<float>(t), (std::vector<float>{1.f, -2.f}));
  Tensor out = host_i32({0, 0}), in = host_i32({4, 5});
  comm->reduce_scatter(out, in);
  EXPECT_EQ(values<int32_t>(out), (std::vector<int32_t>{4, 5}));
  Tensor g = host_i32({0, 0});
  comm->all_gather(g, in);
  EXPECT_EQ(values<int32_t>(g), (std::vector<int32_t>{4, 5}));
  comm->reduce_scatter(in, in);  // in place: out is slice 0 of in
  comm->all_gather(in, in);
  EXPECT_EQ(values<int32_t>(in), (std::vector<int32_t>{4, 5}));
  comm->broadcast(t, 0);
  comm->barrier();
  // Point-to-point with itself works too (non-blocking receive first).
  Tensor r = host_f32({0.f, 0.f});
  auto q = comm->irecv(r, 0, 3);
  comm->send(t, 0, 3);
  q->wait();
  EXPECT_EQ(values<float>(r), (std::vector<float>{1.f, -2.f}));
}

TEST_F(MpiSelf, BatchWithItselfAndTheSelfCommunicator) {
  Tensor a = host_f32({1.f, 2.f}), b = host_f32({0.f, 0.f});
  auto q = comm->batch_isend_irecv({P2POp::recv(b, 0, 7), P2POp::send(a, 0, 7)});
  q->wait();
  EXPECT_EQ(values<float>(b), (std::vector<float>{1.f, 2.f}));
  // The communicator of a group of one (no MPI): a batch of nothing is done, any transfer is an error.
  auto self = make_self_communicator("alone");
  EXPECT_TRUE(self->batch_isend_irecv({})->test());
  EXPECT_THROW(self->batch_isend_irecv({P2POp::send(a, 0, 0)}), Error);
}

TEST_F(MpiSelf, CountsBytesPerCall) {
  Tensor t = host_f32(std::vector<float>(6, 1.f));
  comm->all_reduce(t);
  comm->broadcast(t, 0);
  auto q = comm->iall_gather(t, t);
  q->wait();
  EXPECT_EQ(comm->stats().calls, 3);
  EXPECT_EQ(comm->stats().bytes, 3 * 24);
}

TEST_F(MpiSelf, SizeAndDtypeChecksPrintValues) {
  Tensor in = host_f32(std::vector<float>(5, 0.f)), out = host_f32(std::vector<float>(4, 0.f));
  try {
    comm->reduce_scatter(out, in);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in f32[5] cpu has 5 elements, out f32[4] cpu has 4, size 1"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(comm->all_gather(in, out), Error);
  Tensor head = in.flat_range(0, {4}), shifted = in.flat_range(1, {4});
  EXPECT_THROW(comm->all_gather(head, shifted), Error);  // overlapping, but not slice 0
  Tensor undefined;
  EXPECT_THROW(comm->broadcast(in, 1), Error);
  EXPECT_THROW(comm->all_reduce(undefined), Error);
}

TEST_F(MpiSelf, WatchdogTimesOutARecvNobodySends) {
  auto c = make_mpi_communicator(MPI_COMM_SELF, "lonely", 0.5);
  Tensor t = host_i32({0, 0, 0});
  const auto t0 = std::chrono::steady_clock::now();
  try {
    c->recv(t, 0, 42);
    FAIL() << "recv returned";
  } catch (const TimeoutError& e) {
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(waited, 0.5);
    EXPECT_LT(waited, 2.5);
    const std::string m = e.what();
    EXPECT_NE(m.find("group 'lonely' (rank 0 of 1): recv of 12 bytes"), std::string::npos) << m;
    EXPECT_NE(m.find("from peer 0 (tag 42)"), std::string::npos) << m;
  }
  c->barrier();  // still usable
}

}  // namespace
}  // namespace tandem
