// Multi-rank tests of batch_isend_irecv over MPI (run under mpirun -np N, any N >= 1): sends
// and receives both ways at once with messages far past the eager size and NCCL's buffers, the
// default implementation of Communicator (irecv/isend under one Request), the checks of every
// transfer, and the watchdog on a batch (unmatched receives cancelled; an unfinished send
// stranded and the group marked unusable).
#include <gtest/gtest.h>

#include "parallel/mpi_communicator.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem {
namespace {

using testing::host_f32;

std::unique_ptr<Communicator> world_comm(const std::string& name, double timeout = 30.0) {
  return make_mpi_communicator(MPI_COMM_WORLD, name, timeout);
}

// Element i of the message `from` sends to `to` with tag `tag`.
float ring_value(int from, int to, int tag, int64_t i) {
  return static_cast<float>(from * 100000 + to * 1000 + tag * 10000 + i % 997);  // exact in f32
}

TEST(MpiBatchN, BatchSendsAndReceivesBothWaysAtOnce) {
  auto c = world_comm("batch-ring");
  const int r = c->rank(), n = c->size();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  const int64_t len = int64_t{6} << 20;  // 24 MiB per message: far past eager and NCCL buffers
  auto filled = [&](int to, int tag) {
    Tensor t = testing::host_backend().empty({len}, DType::F32);
    for (int64_t i = 0; i < len; ++i) t.f32()[i] = ring_value(r, to, tag, i);
    return t;
  };
  // Forward to next and backward to prev at once; with n = 2 both go to the same peer, so the
  // two messages of a pair are told apart by their order (and tag).
  Tensor fwd = filled(next, 1), bwd = filled(prev, 2);
  Tensor from_prev = testing::host_backend().empty({len}, DType::F32);
  Tensor from_next = testing::host_backend().empty({len}, DType::F32);
  c->reset_stats();
  auto q = c->batch_isend_irecv({P2POp::send(fwd, next, 1), P2POp::recv(from_next, next, 2),
                                 P2POp::send(bwd, prev, 2), P2POp::recv(from_prev, prev, 1)});
  q->wait();
  EXPECT_TRUE(q->test());
  for (int64_t i : {int64_t{0}, int64_t{1}, len / 3, len - 1}) {
    ASSERT_EQ(from_prev.f32()[i], ring_value(prev, r, 1, i)) << "i " << i;
    ASSERT_EQ(from_next.f32()[i], ring_value(next, r, 2, i)) << "i " << i;
  }
  EXPECT_EQ(c->stats().calls, 4);
  EXPECT_EQ(c->stats().bytes, 2 * len * 4);
  auto none = c->batch_isend_irecv({});  // nothing to do: complete at once
  EXPECT_TRUE(none->test());
  c->barrier();
}

// Forwards everything but batch_isend_irecv to an MPI communicator, so the batch is
// Communicator's default (posted with irecv/isend), as a communicator without its own has it.
class DefaultBatchCommunicator final : public Communicator {
 public:
  explicit DefaultBatchCommunicator(std::unique_ptr<Communicator> c) : c_(std::move(c)) {}
  int rank() const override { return c_->rank(); }
  int size() const override { return c_->size(); }
  const std::string& name() const override { return c_->name(); }
  void all_reduce(Tensor& t, ReduceOp op) override { c_->all_reduce(t, op); }
  void reduce_scatter(Tensor& out, const Tensor& in) override { c_->reduce_scatter(out, in); }
  void all_gather(Tensor& out, const Tensor& in) override { c_->all_gather(out, in); }
  void broadcast(Tensor& t, int root) override { c_->broadcast(t, root); }
  void send(const Tensor& t, int peer, int tag) override { c_->send(t, peer, tag); }
  void recv(Tensor& t, int peer, int tag) override { c_->recv(t, peer, tag); }
  std::unique_ptr<Request> iall_reduce(Tensor& t, ReduceOp op) override { return c_->iall_reduce(t, op); }
  std::unique_ptr<Request> ireduce_scatter(Tensor& out, const Tensor& in) override {
    return c_->ireduce_scatter(out, in);
  }
  std::unique_ptr<Request> iall_gather(Tensor& out, const Tensor& in) override {
    return c_->iall_gather(out, in);
  }
  std::unique_ptr<Request> isend(const Tensor& t, int peer, int tag) override { return c_->isend(t, peer, tag); }
  std::unique_ptr<Request> irecv(Tensor& t, int peer, int tag) override { return c_->irecv(t, peer, tag); }
  void barrier() override { c_->barrier(); }

 private:
  std::unique_ptr<Communicator> c_;
};

TEST(MpiBatchN, DefaultBatchPostsEveryTransfer) {
  DefaultBatchCommunicator c(world_comm("default-batch"));
  const int r = c.rank(), n = c.size();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  const int64_t len = int64_t{1} << 20;  // 4 MiB each way: rendezvous, both directions at once
  Tensor out = testing::host_backend().empty({len}, DType::F32);
  for (int64_t i = 0; i < len; ++i) out.f32()[i] = ring_value(r, next, 3, i);
  Tensor in = testing::host_backend().empty({len}, DType::F32);
  auto q = c.batch_isend_irecv({P2POp::send(out, next, 3), P2POp::recv(in, prev, 3)});
  q->wait();
  EXPECT_TRUE(q->test());
  for (int64_t i : {int64_t{0}, len - 1}) ASSERT_EQ(in.f32()[i], ring_value(prev, r, 3, i)) << i;
  EXPECT_TRUE(c.batch_isend_irecv({})->test());
}

TEST(MpiBatchN, BatchChecksEveryTransfer) {
  auto c = world_comm("batch-checks");
  const int n = c->size();
  Tensor a = host_f32({1.f, 2.f}), b = host_f32({0.f, 0.f});
  EXPECT_THROW(c->batch_isend_irecv({P2POp::send(a, n, 0)}), Error);
  EXPECT_THROW(c->batch_isend_irecv({P2POp::recv(b, 0, -1)}), Error);
  EXPECT_THROW(c->batch_isend_irecv({P2POp::recv(b, 0, 0), P2POp::recv(b, 0, 1)}), Error);  // overlap
  EXPECT_THROW(c->batch_isend_irecv({P2POp::recv(Tensor(), 0, 0)}), Error);
  c->barrier();  // nothing was posted: the group is still in step
}

TEST(MpiBatchN, BatchWatchdogCancelsUnmatchedReceives) {
  auto c = world_comm("batch-recv", 1.0);
  const int r = c->rank(), n = c->size();
  const int prev = (r + n - 1) % n;
  Tensor t = host_f32(std::vector<float>(8, 0.f)), u = host_f32(std::vector<float>(4, 0.f));
  auto q = c->batch_isend_irecv({P2POp::recv(t, prev, 801), P2POp::recv(u, prev, 802)});  // nobody sends
  try {
    q->wait();
    FAIL() << "a batch of unmatched receives completed";
  } catch (const TimeoutError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'batch-recv'"), std::string::npos) << m;
    EXPECT_NE(m.find("batch_isend_irecv of 48 bytes (2 transfers: recv of 32 bytes"), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("from peer {} (tag 802)", prev)), std::string::npos) << m;
    EXPECT_NE(m.find("cancelled"), std::string::npos) << m;
  }
  EXPECT_THROW(q->wait(), Error);  // the failure repeats
  Tensor s = host_f32({1.f});
  c->all_reduce(s);  // still usable
  EXPECT_EQ(s.f32()[0], static_cast<float>(n));
}

TEST(MpiBatchN, BatchWatchdogStrandsAnUnfinishedSend) {
  auto c = world_comm("batch-send", 1.0);
  auto sync = world_comm("batch-send-sync");
  const int r = c->rank(), n = c->size();
  if (n < 2) GTEST_SKIP() << "needs a peer: run with -np >= 2";
  const int64_t len = int64_t{1} << 20;  // 4 MiB: a rendezvous send that waits for its receive
  if (r == 0) {
    Tensor big = host_f32(std::vector<float>(len, 3.f));
    try {
      c->batch_isend_irecv({P2POp::send(big, 1, 5)})->wait();  // rank 1 receives only later
      FAIL() << "a send nobody received completed";
    } catch (const TimeoutError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("send of 4194304 bytes"), std::string::npos) << m;
      EXPECT_NE(m.find("to peer 1 (tag 5)"), std::string::npos) << m;
      EXPECT_NE(m.find("unusable"), std::string::npos) << m;
    }
    EXPECT_THROW(c->barrier(), Error);  // broken
    sync->barrier();  // rank 1 may now receive the stranded send
    sync->barrier();
  } else {
    sync->barrier();
    if (r == 1) {
      Tensor in = host_f32(std::vector<float>(len, 0.f));
      c->recv(in, 0, 5);
      EXPECT_EQ(in.f32()[len - 1], 3.f);
    }
    sync->barrier();
  }
}

}  // namespace
}  // namespace tandem
