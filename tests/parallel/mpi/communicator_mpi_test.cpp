// Multi-rank tests of the MPI communicator (run under mpirun -np N, any N >= 1): collectives
// against closed-form expectations, rings, overlap, byte counts, size checks, and the watchdog.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <thread>

#include "parallel/mpi_communicator.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem {
namespace {

using testing::host_f32;
using testing::host_i32;
using testing::values;

constexpr double kTimeout = 30.0;  // generous: 8 ranks share 2 cores in CI

std::unique_ptr<Communicator> world_comm(const std::string& name = "test-world",
                                         double timeout = kTimeout) {
  return make_mpi_communicator(MPI_COMM_WORLD, name, timeout);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(MpiCommunicatorN, RankAndSizeMatchWorld) {
  auto c = world_comm();
  EXPECT_EQ(c->rank(), testing::world_rank());
  EXPECT_EQ(c->size(), testing::world_size());
  EXPECT_EQ(c->name(), "test-world");
}

TEST(MpiCommunicatorN, AllReduceSumAndMaxF32I32) {
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
    for (int64_t i = 0; i < len; ++i) {
      ASSERT_EQ(fs.f32()[i], static_cast<float>(n * (i % 7) + tri)) << "len " << len << " i " << i;
      ASSERT_EQ(fm.f32()[i], static_cast<float>(n - 1 + i % 7)) << i;
      ASSERT_EQ(is.i32()[i], n * static_cast<int32_t>(i % 5) + 3 * tri) << i;
      ASSERT_EQ(im.i32()[i], 3 * (n - 1) + static_cast<int32_t>(i % 5)) << i;
    }
  }
}

TEST(MpiCommunicatorN, ReduceScatterOutOfPlaceAndInPlace) {
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
  for (int e = 0; e < k; ++e) EXPECT_EQ(out.f32()[e], expect(e)) << "e " << e;

  Tensor buf = host_f32(v);
  Tensor slice = buf.flat_range(static_cast<int64_t>(r) * k, {k});
  c->reduce_scatter(slice, buf);
  for (int e = 0; e < k; ++e) EXPECT_EQ(slice.f32()[e], expect(e)) << "in place, e " << e;

  std::vector<int32_t> iv(k * n);
  for (int j = 0; j < k * n; ++j) iv[j] = r + j;
  Tensor iin = host_i32(iv), iout = host_i32(std::vector<int32_t>(k, 0));
  c->reduce_scatter(iout, iin);
  for (int e = 0; e < k; ++e) EXPECT_EQ(iout.i32()[e], n * (n - 1) / 2 + n * (r * k + e));
}

TEST(MpiCommunicatorN, AllGatherOutOfPlaceAndInPlace) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  const int k = 4;
  std::vector<int32_t> mine(k);
  for (int e = 0; e < k; ++e) mine[e] = r * 10 + e;
  Tensor in = host_i32(mine), out = host_i32(std::vector<int32_t>(k * n, -1));
  c->all_gather(out, in);
  for (int q = 0; q < n; ++q)
    for (int e = 0; e < k; ++e) EXPECT_EQ(out.i32()[q * k + e], q * 10 + e) << q << "," << e;

  Tensor whole = host_f32(std::vector<float>(k * n, -1.f));
  Tensor part = whole.flat_range(static_cast<int64_t>(r) * k, {k});
  for (int e = 0; e < k; ++e) part.f32()[e] = static_cast<float>(r * 10 + e);
  c->all_gather(whole, part);
  for (int q = 0; q < n; ++q)
    for (int e = 0; e < k; ++e)
      EXPECT_EQ(whole.f32()[q * k + e], static_cast<float>(q * 10 + e)) << "in place " << q;
}

TEST(MpiCommunicatorN, BroadcastFromEveryRoot) {
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

TEST(MpiCommunicatorN, SendRecvRing) {
  auto c = world_comm();
  const int r = c->rank(), n = c->size();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  for (int64_t len : {int64_t{3}, int64_t{50000}}) {
    std::vector<float> v(len, static_cast<float>(r));
    Tensor out = host_f32(v), in = host_f32(std::vector<float>(len, -1.f));
    auto rq = c->irecv(in, prev, 11);
    c->send(out, next, 11);
    rq->wait();
    EXPECT_EQ(in.f32()[0], static_cast<float>(prev));
    EXPECT_EQ(in.f32()[len - 1], static_cast<float>(prev));
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

TEST(MpiCommunicatorN, NonBlockingOverlapsLocalWork) {
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
  EXPECT_EQ(a.f32()[0], static_cast<float>(n + n * (n - 1) / 2));
  EXPECT_EQ(a.f32()[len - 1], static_cast<float>(n + n * (n - 1) / 2));
  EXPECT_EQ(rs_out.f32()[len / 2], static_cast<float>(n));
  for (int q = 0; q < n; ++q) EXPECT_EQ(ag_out.i32()[q * len + 5], q);
}

TEST(MpiCommunicatorN, CountsPayloadBytes) {
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

TEST(MpiCommunicatorN, SizeChecksPrintValues) {
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
  Tensor u = testing::host_backend().empty({4}, DType::U16);
  EXPECT_THROW(c->all_reduce(u), Error);
  c->barrier();  // nothing was started by the failed calls: the group is still in step
  Tensor ok = host_f32({1.f});
  c->all_reduce(ok);
  EXPECT_EQ(ok.f32()[0], static_cast<float>(n));
}

TEST(MpiCommunicatorN, WatchdogCancelsUnmatchedRecvAndGroupStaysUsable) {
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
  EXPECT_EQ(s.f32()[0], 2.f * n);
  // A fresh message with the cancelled tag goes to a fresh receive.
  Tensor out = host_f32({static_cast<float>(r)}), in = host_f32({-1.f});
  auto rq = c->irecv(in, (r + n - 1) % n, 777);
  c->send(out, peer, 777);
  rq->wait();
  EXPECT_EQ(in.f32()[0], static_cast<float>((r + n - 1) % n));
}

TEST(MpiCommunicatorN, DroppedRequestsAreDrained) {
  auto c = world_comm("dropped");
  const int n = c->size();
  Tensor t = host_f32({1.f});
  { auto q = c->irecv(t, 0, 901); }  // never sent: cancelled on destruction
  Tensor s = host_f32({1.f});
  { auto q = c->iall_reduce(s); }  // dropped: drained on destruction
  EXPECT_EQ(s.f32()[0], static_cast<float>(n));
  c->barrier();
}

TEST(MpiCommunicatorN, WatchdogOnCollectiveMarksGroupUnusable) {
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
    EXPECT_EQ(t.f32()[0], static_cast<float>(n * (n + 1) / 2));
    sync->barrier();
  }
}

}  // namespace
}  // namespace tandem
