// One-rank tensor-file faults (ckpt/tensor_file.h): a file system that refuses the space fails
// reserve() with the OS error, a write that fails mid-file fails close() with the OS error, and
// neither leaves its file behind; a file that cannot be created names why; a file written whole
// reads back with its checksums, trimmed to the size it uses.
// Failures come from RLIMIT_FSIZE (EFBIG, "File too large"), which needs no root.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "ckpt/tensor_file.h"
#include "tests/parallel/mpi/mpi_test_util.h"
#include "tests/support/temp_dir.h"

namespace tandem::ckpt {
namespace {

namespace fs = std::filesystem;

const auto* const kFinalize = ::testing::AddGlobalTestEnvironment(new tandem::testing::MpiFinalizeEnvironment);

class TensorFileFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    tandem::testing::ensure_mpi();
    path = dir + "/t.h5";
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    prev_handler = std::signal(SIGXFSZ, SIG_IGN);
  }
  void TearDown() override {
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    std::signal(SIGXFSZ, prev_handler);
  }
  void limit_file_size(rlim_t bytes) {
    struct rlimit lim = old_limit;
    lim.rlim_cur = bytes;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  }
  tandem::testing::TempDir tmp{"tandem_tensorfile"};
  std::string dir = tmp.path().string(), path;
  struct rlimit old_limit {};
  void (*prev_handler)(int) = nullptr;
  const Dims shape{256, 1024};  // 1 MiB of float32
  std::vector<float> data = std::vector<float>(256 * 1024, 0.5f);
};

TEST_F(TensorFileFaults, ReserveNamesTheOsErrorAndRemovesTheFile) {
  TensorFileWriter w(MPI_COMM_SELF, path, 30);
  limit_file_size(64 * 1024);
  try {
    w.reserve(4 << 20, 1);
    FAIL() << "reserving 4 MiB past a 64 KiB limit succeeded";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot reserve"), std::string::npos) << m;
    EXPECT_NE(m.find("File too large"), std::string::npos) << m;
    EXPECT_NE(m.find(path), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(TensorFileFaults, AFailedWriteNamesTheOsErrorAtCloseAndRemovesTheFile) {
  TensorFileWriter w(MPI_COMM_SELF, path, 30);
  limit_file_size(64 * 1024);
  w.attr("step", int64_t{3});
  w.write_tensor("model/a", shape, {Segment{data.data(), {whole_tensor(shape)}, {}}});
  w.write_tensor("model/b", shape, {Segment{data.data(), {whole_tensor(shape)}, {}}});  // same calls after a failure
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  try {
    w.close();
    FAIL() << "close() succeeded after a failed write";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot write dataset model/a"), std::string::npos) << m;
    EXPECT_NE(m.find("File too large"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(TensorFileFaults, ACreateThatFailsNamesTheOsError) {
  try {
    TensorFileWriter w(MPI_COMM_SELF, dir + "/missing/x.h5", 30);
    FAIL() << "a file was created in a directory that does not exist";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create the file: No such file or directory"), std::string::npos)
        << e.what();
  }
}

TEST_F(TensorFileFaults, AWholeFileReadsBackAndIsTrimmedToWhatItUses) {
  {
    TensorFileWriter w(MPI_COMM_SELF, path, 30);
    w.reserve(64 << 20, 1);  // far more than it needs
    w.write_tensor("model/a", shape, {Segment{data.data(), {whole_tensor(shape)}, {}}});
    w.attr_uint64("big", ~uint64_t{0});
    EXPECT_EQ(w.close(), 1 << 20);
  }
  EXPECT_LT(fs::file_size(path), uint64_t{2} << 20) << "the reservation was not trimmed";
  TensorFileReader r(MPI_COMM_SELF, path, 30);
  std::vector<float> back(data.size());
  r.read_tensor("model/a", shape, {Segment{back.data(), {whole_tensor(shape)}, {whole_tensor(shape)}}});
  r.verify();
  EXPECT_EQ(back, data);
  EXPECT_EQ(r.attr_uint64("big"), ~uint64_t{0});
  EXPECT_THROW(r.attr_int("big"), CheckpointError);  // does not fit int64: never a wrap
}

}  // namespace
}  // namespace tandem::ckpt
