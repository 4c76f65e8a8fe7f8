// first_failure and sum_across (parallel/agreement.h) at every world size of test_parallel_mpi:
// every rank gets the lowest failing rank's message and the count; sums are exact mod 2^64.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parallel/agreement.h"
#include "parallel/mpi_communicator.h"
#include "tests/parallel/mpi/mpi_test_util.h"

namespace tandem {
namespace {

TEST(Agreement, EveryRankLearnsTheLowestFailingRanksMessage) {
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, "agreement", 60.0);
  const int r = comm->rank(), n = comm->size();
  EXPECT_FALSE(first_failure(*comm, "").failed());
  // Odd ranks fail, each with a message of its own length (not a multiple of 4).
  const std::string mine = r % 2 ? "rank " + std::to_string(r) + std::string(static_cast<size_t>(r), '!') : "";
  const GroupFailure f = first_failure(*comm, mine);
  ASSERT_TRUE(f.failed());
  EXPECT_EQ(f.rank, 1);
  EXPECT_EQ(f.ranks_failed, n / 2);
  EXPECT_EQ(f.message, "rank 1!");
  EXPECT_EQ(f.describe(n), n / 2 > 1 ? fmt::format("rank 1: rank 1! (and {} other rank(s))", n / 2 - 1)
                                     : std::string("rank 1: rank 1!"));
  const GroupFailure all = first_failure(*comm, "same everywhere");
  EXPECT_EQ(all.describe(n), "same everywhere");  // every rank saw it: no rank named
}

TEST(Agreement, SumAcrossIsExactModulo2To64) {
  auto comm = make_mpi_communicator(MPI_COMM_WORLD, "sums", 60.0);
  const uint64_t big = ~uint64_t{0} - 5;
  const std::vector<uint64_t> mine = {big, static_cast<uint64_t>(comm->rank()), uint64_t{1} << 63};
  const std::vector<uint64_t> got = sum_across(*comm, mine);
  const uint64_t n = static_cast<uint64_t>(comm->size());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], big * n);
  EXPECT_EQ(got[1], n * (n - 1) / 2);
  EXPECT_EQ(got[2], (uint64_t{1} << 63) * n);
}

}  // namespace
}  // namespace tandem
