// AtomicFile (runtime/core/file_io.h): a committed file appears whole under its name; a failed
// write names the OS error and leaves no temporary; an uncommitted one leaves nothing behind.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/core/error.h"
#include "runtime/core/file_io.h"
#include "tests/support/temp_dir.h"

namespace tandem {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public ::testing::Test {
 protected:
  tandem::testing::TempDir tmp{"tandem_fileio"};
  std::string dir = tmp.path().string();
};

TEST_F(AtomicFileTest, CommitReplacesTheFileWhole) {
  const std::string p = dir + "/f";
  std::ofstream(p) << "old";
  {
    AtomicFile f(p);
    f.write("new ");
    f.write("text");
    EXPECT_TRUE(fs::exists(p + ".tmp"));
    std::ifstream in(p);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "old");
    f.commit();
  }
  std::ifstream in(p);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "new text");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

TEST_F(AtomicFileTest, UncommittedLeavesNothing) {
  { AtomicFile f(dir + "/g"); f.write("x"); }
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST_F(AtomicFileTest, FailuresNameTheOsErrorAndRemoveTheTemporary) {
  try {
    AtomicFile f(dir + "/missing/h");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* prev = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 4;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    write_file_atomic(dir + "/h", "more than four bytes");
  } catch (const Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, prev);
  EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 of 20 bytes"), std::string::npos) << msg;
  EXPECT_TRUE(fs::is_empty(dir)) << "debris left";
}

}  // namespace
}  // namespace tandem
