// Multi-rank tests of the host-path communicators (run under mpirun -np N, any N >= 1):
// collectives against closed-form expectations, rings, overlap, byte counts, size checks, and
// the watchdog. Every test runs for each kind:
//   mpi          MpiCommunicator on host tensors
//   staged_cpu   the staged communicator (parallel/staged_communicator.h) on a CPU backend:
//                the staging logic with memcpy copies
//   staged_cuda  the staged communicator on a CUDA backend, every rank on one GPU if there is
//                only one (the case NCCL refuses); skipped visibly, on every rank alike, where
//                some rank sees no GPU
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <thread>

#include "parallel/mpi_communicator.h"
#include "parallel/staged_communicator.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem {
namespace {

constexpr double kTimeout = 30.0;  // generous: 8 ranks share 2 cores in CI

enum class Kind { Mpi, StagedCpu, StagedCuda };

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class CommunicatorN : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (GetParam() == Kind::StagedCuda) {
      be_ = testing::shared_gpu_backend();
      if (be_ == nullptr) GTEST_SKIP() << "no CUDA device: the staged communicator on a GPU";
    } else {
      be_ = &testing::host_backend();
    }
  }

  std::unique_ptr<Communicator> world_comm(const std::string& name = "test-world",
                                           double timeout = kTimeout) {
    if (GetParam() == Kind::Mpi) return make_mpi_communicator(MPI_COMM_WORLD, name, timeout);
    return make_staged_communicator(MPI_COMM_WORLD, name, timeout, *be_);
  }

  // Tensors of this kind's backend, filled from host values, and their values read back.
  Tensor on_backend(const Tensor& host) {
    if (be_->kind() == DeviceKind::CPU) return host;
    Tensor d = be_->empty(host.shape(), host.dtype());
    be_->copy(d, host);
    return d;
  }
  Tensor host_f32(const std::vector<float>& v) { return on_backend(testing::host_f32(v)); }
  Tensor host_i32(const std::vector<int32_t>& v) { return on_backend(testing::host_i32(v)); }
  template <class T>
  std::vector<T> values(const Tensor& t) {
    if (t.is_cpu()) return testing::values<T>(t);
    Tensor h = testing::host_backend().empty(t.shape(), t.dtype());
    be_->copy(h, t);
    return testing::values<T>(h);
  }

  Backend* be_ = nullptr;
};

INSTANTIATE_TEST_SUITE_P(Kinds, CommunicatorN,
                         ::testing::Values(Kind::Mpi, Kind::StagedCpu, Kind::StagedCuda),
                         [](const ::testing::TestParamInfo<Kind>& i) {
                           return i.param == Kind::Mpi         ? std::string("mpi")
                                  : i.param == Kind::StagedCpu ? std::string("staged_cpu")
                                                               : std::string("staged_cuda");
                         });

TEST_P(CommunicatorN, RankAndSizeMatchWorld) {
  auto c = world_comm();
  EXPECT_EQ(c->rank(), testing::world_rank());
  EXPECT_EQ(c->size(), testing::world_size());
  EXPECT_EQ(c->name(), "test-world");
}

TEST_P(CommunicatorN, AllReduceSumAndMaxF32I32) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  for (int64_t len : {int64_t{5}, int64_t{100000}}) {  // eager and rendezvous sizes
    std::vector<float> fv(len);
    std::vector<int32_t> iv(len);
    for (int64_t i = 0; i < len; ++i) {
      fv[i] = static_cast<float>(r + i % 7);
      iv[i] = static_cast<int32_t>(r * 3 + i % 5);
    }
    Tensor fs = host_f32(fv), fm = host_f32(fv), is = host_i32(iv), im = host_i32(iv);
    c->all_reduce(fs, ReduceOp::Sum);
    c->all_reduce(fm, ReduceOp::Max);
    c->all_reduce(is, ReduceOp::Sum);
    c->all_reduce(im, ReduceOp::Max);
    const int tri = n * (n - 1) / 2;
    const auto fsv = values<float>(fs), fmv = values<float>(fm);
    const auto isv = values<int32_t>(is), imv = values<int32_t>(im);
    for (int64_t i = 0; i < len; ++i) {
      ASSERT_EQ(fsv[i], static_cast<float>(n * (i % 7) + tri)) << "len " << len << " i " << i;
      ASSERT_EQ(fmv[i], static_cast<float>(n - 1 + i % 7)) << i;
      ASSERT_EQ(isv[i], n * static_cast<int32_t>(i % 5) + 3 * tri) << i;
      ASSERT_EQ(imv[i], 3 * (n - 1) + static_cast<int32_t>(i % 5)) << i;
    }
  }
}

TEST_P(CommunicatorN, ReduceScatterOutOfPlaceAndInPlace) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  const int k = 3;
  std::vector<float> v(k * n);
  for (int j = 0; j < k * n; ++j) v[j] = static_cast<float>(r * 1000 + j);
  auto expect = [&](int e) {  // sum over q of (q * 1000 + r * k + e)
    return static_cast<float>(1000 * n * (n - 1) / 2 + n * (r * k + e));
  };
  Tensor in = host_f32(v);
  Tensor out = host_f32(std::vector<float>(k, -1.f));
  c->reduce_scatter(out, in);
  for (int e = 0; e < k; ++e) EXPECT_EQ(values<float>(out)[e], expect(e)) << "e " << e;

  Tensor buf = host_f32(v);
  Tensor slice = buf.flat_range(static_cast<int64_t>(r) * k, {k});
  c->reduce_scatter(slice, buf);
  for (int e = 0; e < k; ++e) EXPECT_EQ(values<float>(slice)[e], expect(e)) << "in place, e " << e;

  std::vector<int32_t> iv(k * n);
  for (int j = 0; j < k * n; ++j) iv[j] = r + j;
  Tensor iin = host_i32(iv), iout = host_i32(std::vector<int32_t>(k, 0));
  c->reduce_scatter(iout, iin);
  for (int e = 0; e < k; ++e) EXPECT_EQ(values<int32_t>(iout)[e], n * (n - 1) / 2 + n * (r * k + e));
}

TEST_P(CommunicatorN, AllGatherOutOfPlaceAndInPlace) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  const int k = 4;
  std::vector<int32_t> mine(k);
  for (int e = 0; e < k; ++e) mine[e] = r * 10 + e;
  Tensor in = host_i32(mine), out = host_i32(std::vector<int32_t>(k * n, -1));
  c->all_gather(out, in);
  for (int q = 0; q < n; ++q)
    for (int e = 0; e < k; ++e) EXPECT_EQ(values<int32_t>(out)[q * k + e], q * 10 + e) << q << "," << e;

  std::vector<float> wv(k * n, -1.f);
  for (int e = 0; e < k; ++e) wv[r * k + e] = static_cast<float>(r * 10 + e);
  Tensor whole = host_f32(wv);
  Tensor part = whole.flat_range(static_cast<int64_t>(r) * k, {k});
  c->all_gather(whole, part);
  const auto got = values<float>(whole);
  for (int q = 0; q < n; ++q)
    for (int e = 0; e < k; ++e)
      EXPECT_EQ(got[q * k + e], static_cast<float>(q * 10 + e)) << "in place " << q;
}

TEST_P(CommunicatorN, BroadcastFromEveryRoot) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  for (int root = 0; root < n; ++root) {
    Tensor f = host_f32({-1.f, -1.f, -1.f});
    Tensor i = host_i32({-1, -1});
    if (r == root) {
      f = host_f32({1.5f + root, 2.5f, 3.5f});
      i = host_i32({root, 7});
    }
    c->broadcast(f, root);
    c->broadcast(i, root);
    EXPECT_EQ(values<float>(f), (std::vector<float>{1.5f + root, 2.5f, 3.5f})) << "root " << root;
    EXPECT_EQ(values<int32_t>(i), (std::vector<int32_t>{root, 7})) << "root " << root;
  }
}

TEST_P(CommunicatorN, SendRecvRing) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  for (int64_t len : {int64_t{3}, int64_t{50000}}) {
    std::vector<float> v(len, static_cast<float>(r));
    Tensor out = host_f32(v), in = host_f32(std::vector<float>(len, -1.f));
    auto rq = c->irecv(in, prev, 11);
    c->send(out, next, 11);
    rq->wait();
    const auto got = values<float>(in);
    EXPECT_EQ(got[0], static_cast<float>(prev));
    EXPECT_EQ(got[len - 1], static_cast<float>(prev));
  }
  // Blocking both ways: even ranks send first, odd ranks receive first (n >= 2).
  if (n >= 2) {
    Tensor out = host_i32({r, r}), in = host_i32({-1, -1});
    if (r % 2 == 0) {
      c->send(out, next, 12);
      c->recv(in, prev, 12);
    } else {
      c->recv(in, prev, 12);
      c->send(out, next, 12);
    }
    EXPECT_EQ(values<int32_t>(in), (std::vector<int32_t>{prev, prev}));
  }
}

TEST_P(CommunicatorN, NonBlockingOverlapsLocalWork) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  const int64_t len = 20000;
  Tensor a = host_f32(std::vector<float>(len, 1.f + r));
  Tensor rs_in = host_f32(std::vector<float>(len * n, 1.f));
  Tensor rs_out = host_f32(std::vector<float>(len, 0.f));
  Tensor ag_in = host_i32(std::vector<int32_t>(len, r));
  Tensor ag_out = host_i32(std::vector<int32_t>(len * n, -1));
  auto q1 = c->iall_reduce(a, ReduceOp::Sum);
  auto q2 = c->ireduce_scatter(rs_out, rs_in);
  auto q3 = c->iall_gather(ag_out, ag_in);
  double local = 0;  // local work while the operations progress
  int polls = 0;
  for (int i = 0; i < 200000; ++i) {
    local += std::sqrt(static_cast<double>(i));
    if (i % 20000 == 0) {
      q1->test();
      ++polls;
    }
  }
  EXPECT_GT(local, 0.0);
  EXPECT_GT(polls, 0);
  q3->wait();
  q2->wait();
  q1->wait();
  EXPECT_TRUE(q1->test());  // a finished request stays finished
  const auto av = values<float>(a);
  EXPECT_EQ(av[0], static_cast<float>(n + n * (n - 1) / 2));
  EXPECT_EQ(av[len - 1], static_cast<float>(n + n * (n - 1) / 2));
  EXPECT_EQ(values<float>(rs_out)[len / 2], static_cast<float>(n));
  const auto agv = values<int32_t>(ag_out);
  for (int q = 0; q < n; ++q) EXPECT_EQ(agv[q * len + 5], q);
}

TEST_P(CommunicatorN, CountsPayloadBytes) {
  auto c = world_comm();
  const int n = c->size();
  c->reset_stats();
  Tensor t = host_f32(std::vector<float>(10, 1.f));
  c->all_reduce(t);                                     // 40
  Tensor in = host_f32(std::vector<float>(3, 1.f));
  Tensor out = host_f32(std::vector<float>(3 * n, 0.f));
  c->all_gather(out, in);                               // 12
  Tensor rs_out = host_f32(std::vector<float>(2, 0.f));
  Tensor rs_in = host_f32(std::vector<float>(2 * n, 1.f));
  c->reduce_scatter(rs_out, rs_in);                     // 8 n
  Tensor b = host_i32({1, 2, 3, 4});
  c->broadcast(b, 0);                                   // 16
  c->barrier();                                         // 0
  EXPECT_EQ(c->stats().calls, 5);
  EXPECT_EQ(c->stats().bytes, 40 + 12 + 8 * n + 16);
  c->reset_stats();
  EXPECT_EQ(c->stats().calls, 0);
  EXPECT_EQ(c->stats().bytes, 0);
}

TEST_P(CommunicatorN, SizeChecksPrintValues) {
  auto c = world_comm();
  const int n = c->size();
  Tensor in = host_f32(std::vector<float>(3 * n + 1, 0.f));
  Tensor out = host_f32(std::vector<float>(3, 0.f));
  try {
    c->reduce_scatter(out, in);
    FAIL() << "reduce_scatter accepted mismatched sizes";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("test-world"), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("in f32[{}] cpu has {} elements", 3 * n + 1, 3 * n + 1)),
              std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("size {}", n)), std::string::npos) << m;
  }
  Tensor gout = host_f32(std::vector<float>(3 * n + 2, 0.f));
  try {
    c->all_gather(gout, out);
    FAIL() << "all_gather accepted mismatched sizes";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(fmt::format("expected out = {}", 3 * n)), std::string::npos) << m;
  }
  Tensor iout = host_i32(std::vector<int32_t>(3 * n, 0));
  EXPECT_THROW(c->all_gather(iout, out), Error);  // dtype mismatch
  Tensor t = host_f32({1.f});
  EXPECT_THROW(c->broadcast(t, n), Error);
  EXPECT_THROW(c->send(t, n, 0), Error);
  EXPECT_THROW(c->recv(t, -1, 0), Error);
  EXPECT_THROW(c->send(t, 0, -5), Error);
  Tensor u = be_->empty({4}, DType::U16);
  EXPECT_THROW(c->all_reduce(u), Error);
  c->barrier();  // nothing was started by the failed calls: the group is still in step
  Tensor ok = host_f32({1.f});
  c->all_reduce(ok);
  EXPECT_EQ(values<float>(ok)[0], static_cast<float>(n));
}

TEST_P(CommunicatorN, WatchdogCancelsUnmatchedRecvAndGroupStaysUsable) {
  const double timeout = 1.0;
  auto c = world_comm("watchdog-recv", timeout);
  const int r = c->rank(), n = c->size();
  const int peer = (r + 1) % n;
  Tensor t = host_f32(std::vector<float>(8, 0.f));
  auto t0 = std::chrono::steady_clock::now();
  try {
    c->recv(t, peer, 777);  // nobody sends
    FAIL() << "recv without a sender returned";
  } catch (const TimeoutError& e) {
    const double waited = seconds_since(t0);
    const std::string m = e.what();
    EXPECT_GE(waited, timeout);
    EXPECT_LT(waited, timeout + 3.0) << "watchdog fired late";
    EXPECT_NE(m.find("'watchdog-recv'"), std::string::npos) << m;
    EXPECT_NE(m.find("recv of 32 bytes"), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("from peer {} (tag 777)", peer)), std::string::npos) << m;
    EXPECT_NE(m.find("cancelled"), std::string::npos) << m;
  }
  // Non-blocking flavour: wait() throws, and waiting again repeats the error.
  auto q = c->irecv(t, peer, 778);
  EXPECT_FALSE(q->test());
  EXPECT_THROW(q->wait(), TimeoutError);
  EXPECT_THROW(q->wait(), Error);
  // The cancelled receives left the group usable.
  Tensor s = host_f32({2.f});
  c->all_reduce(s);
  EXPECT_EQ(values<float>(s)[0], 2.f * n);
  // A fresh message with the cancelled tag goes to a fresh receive.
  Tensor out = host_f32({static_cast<float>(r)}), in = host_f32({-1.f});
  auto rq = c->irecv(in, (r + n - 1) % n, 777);
  c->send(out, peer, 777);
  rq->wait();
  EXPECT_EQ(values<float>(in)[0], static_cast<float>((r + n - 1) % n));
}

TEST_P(CommunicatorN, DroppedRequestsAreDrained) {
  auto c = world_comm("dropped");
  const int n = c->size();
  Tensor t = host_f32({1.f});
  { auto q = c->irecv(t, 0, 901); }  // never sent: cancelled on destruction
  Tensor s = host_f32({1.f});
  { auto q = c->iall_reduce(s); }  // dropped: drained on destruction
  EXPECT_EQ(values<float>(s)[0], static_cast<float>(n));
  c->barrier();
}

TEST_P(CommunicatorN, WatchdogOnCollectiveMarksGroupUnusable) {
  auto c = world_comm("watchdog-coll", 1.0);
  auto sync = world_comm("watchdog-sync");
  const int r = c->rank(), n = c->size();
  if (n < 2) GTEST_SKIP() << "needs a missing rank: run with -np >= 2";
  Tensor t = host_f32({static_cast<float>(r + 1)});
  if (r != 0) {
    auto t0 = std::chrono::steady_clock::now();
    try {
      c->all_reduce(t);  // rank 0 is late: it joins only after our watchdog fired
      FAIL() << "all_reduce without rank 0 returned";
    } catch (const TimeoutError& e) {
      const std::string m = e.what();
      EXPECT_GE(seconds_since(t0), 1.0);
      EXPECT_NE(m.find("'watchdog-coll'"), std::string::npos) << m;
      EXPECT_NE(m.find("all_reduce(sum) of 4 bytes"), std::string::npos) << m;
      EXPECT_NE(m.find("unusable"), std::string::npos) << m;
    }
    try {
      c->barrier();
      FAIL() << "a group whose collective timed out accepted another call";
    } catch (const TimeoutError&) {
      FAIL() << "expected the unusable-group error, not another timeout";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("unusable for barrier"), std::string::npos) << e.what();
    }
    sync->barrier();  // tell rank 0 to join the stranded all_reduce
    sync->barrier();  // progress it until rank 0 has its result
  } else {
    sync->barrier();
    c->all_reduce(t);  // completes against the others' stranded requests
    EXPECT_EQ(values<float>(t)[0], static_cast<float>(n * (n + 1) / 2));
    sync->barrier();
  }
}

}  // namespace
}  // namespace tandem
