// Tensor-file faults across ranks (test_ckpt_mpi, run at np 2 and 4): when the last rank's
// writes fail (RLIMIT_FSIZE on that rank only: EFBIG, "File too large") while the others'
// succeed, every rank leaves the write together, each with the same CheckpointError naming the
// file, the failing rank and the OS error, and the file is gone. (It used to hang: the failing
// rank closed the file collectively from its destructor while the others went on.) A reserve
// that rank 0 cannot make fails on every rank the same way.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "ckpt/tensor_file.h"

namespace tandem::ckpt {
namespace {

namespace fs = std::filesystem;

class TensorFileFaultsMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char name[4096] = "";
    if (rank == 0) {
      const char* base = std::getenv("TMPDIR");
      std::snprintf(name, sizeof name, "%s/tandem_faults_XXXXXX", base && *base ? base : "/tmp");
      if (::mkdtemp(name) == nullptr) name[0] = '\0';
    }
    MPI_Bcast(name, sizeof name, MPI_CHAR, 0, MPI_COMM_WORLD);
    ASSERT_NE(name[0], '\0');
    dir = name;
    path = dir + "/faults.h5";
    ::getrlimit(RLIMIT_FSIZE, &old_limit);
    prev_handler = std::signal(SIGXFSZ, SIG_IGN);
  }
  void TearDown() override {
    restore_limit();
    std::signal(SIGXFSZ, prev_handler);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) fs::remove_all(dir);
  }
  void limit_file_size_on(int who, rlim_t bytes) {
    if (rank != who) return;
    struct rlimit lim = old_limit;
    lim.rlim_cur = bytes;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  }
  void restore_limit() { ::setrlimit(RLIMIT_FSIZE, &old_limit); }
  bool file_exists_everywhere_agreed() {
    int here = fs::exists(path) ? 1 : 0, any = 0;
    MPI_Allreduce(&here, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any != 0;
  }

  int rank = 0, size = 1;
  std::string dir, path;
  struct rlimit old_limit {};
  void (*prev_handler)(int) = nullptr;
};

// Rows [rank * R, (rank + 1) * R) of a [size * R, 1024] tensor: 256 KiB per rank.
constexpr int64_t kRows = 64, kCols = 1024;

TEST_F(TensorFileFaultsMpi, OneRanksFailedWriteEndsTheWriteOnEveryRankWithTheOsError) {
  const Dims shape{size * kRows, kCols};
  std::vector<float> mine(kRows * kCols, static_cast<float>(rank));
  Hyperslab slab{{rank * kRows, 0}, {1, 1}, {1, 1}, {kRows, kCols}};
  const std::vector<Segment> segs = {Segment{mine.data(), {Piece{0, kRows * kCols, slab}}, {}}};
  std::string msg;
  try {
    TensorFileWriter w(MPI_COMM_WORLD, path, 60);  // a hang would end in the I/O watchdog
    limit_file_size_on(size - 1, 64 * 1024);  // its rows start beyond 64 KiB
    w.write_tensor("model/t", shape, segs);
    w.write_tensor("model/u", shape, segs);
    restore_limit();
    w.close();
  } catch (const CheckpointError& e) {
    msg = e.what();
  }
  restore_limit();
  ASSERT_FALSE(msg.empty()) << "the write succeeded although rank " << size - 1 << " could not write";
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank " + std::to_string(size - 1)), std::string::npos) << msg;
  EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model/t"), std::string::npos) << msg;
  EXPECT_FALSE(file_exists_everywhere_agreed()) << "the failed file remained";
}

TEST_F(TensorFileFaultsMpi, AReserveRankZeroCannotMakeFailsOnEveryRank) {
  std::string msg;
  try {
    TensorFileWriter w(MPI_COMM_WORLD, path, 60);
    limit_file_size_on(0, 64 * 1024);
    w.reserve(int64_t{8} << 20, 4);
  } catch (const CheckpointError& e) {
    msg = e.what();
  }
  restore_limit();
  EXPECT_NE(msg.find("cannot reserve"), std::string::npos) << msg;
  EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
  EXPECT_FALSE(file_exists_everywhere_agreed());
}

}  // namespace
}  // namespace tandem::ckpt
