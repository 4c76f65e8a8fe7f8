// The checkpoint directory's failure paths (ckpt/checkpoint_dir.h): a `latest` with a CRLF line
// end is refused with the CR shown; a publish whose `latest.tmp` cannot be written names the OS
// error and leaves no debris (no temporary, no 0-byte latest.tmp, no renamed file that `latest`
// never names) and `latest` as it was; the start-up check names why a directory is unusable.
// A write that fails is made with RLIMIT_FSIZE (EFBIG, "File too large"), which needs no root.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include "ckpt/checkpoint_dir.h"
#include "ckpt/tensor_file.h"
#include "tests/support/temp_dir.h"

namespace tandem::ckpt {
namespace {

namespace fs = std::filesystem;

class CheckpointDir : public ::testing::Test {
 protected:
  tandem::testing::TempDir tmp{"tandem_ckptdir"};
  std::string dir = tmp.path().string();
  void put(const std::string& name, const std::string& text) { std::ofstream(dir + "/" + name, std::ios::binary) << text; }
  std::string get(const std::string& name) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

// Runs `f` with writes beyond `bytes` failing (EFBIG), then restores the limit.
template <class F>
void with_file_size_limit(rlim_t bytes, F f) {
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* prev = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = bytes;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  f();
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, prev);
}

TEST_F(CheckpointDir, LatestWithACrlfLineEndIsRefusedShowingTheCr) {
  put("step_00000006.h5", "x");
  put("latest", "step_00000006.h5\r\n");
  try {
    latest_checkpoint(dir);
    FAIL() << "a CRLF latest was accepted";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("\"step_00000006.h5\\r\""), std::string::npos) << m;
    EXPECT_NE(m.find("CRLF"), std::string::npos) << m;
  }
}

TEST_F(CheckpointDir, LatestShowsOtherInvisibleCharacters) {
  put("latest", std::string("step_0000\t006.h5\0x\n", 20));
  try {
    latest_checkpoint(dir);
    FAIL() << "a bad latest was accepted";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("step_0000\\t006.h5\\x00x"), std::string::npos) << e.what();
  }
}

TEST_F(CheckpointDir, PublishThatCannotWriteLatestNamesTheOsErrorAndLeavesNoDebris) {
  put("step_00000003.h5", "previous");
  put("latest", "step_00000003.h5\n");
  put(".step_00000006.h5.tmp", "new checkpoint");
  bool threw = false;
  std::string msg;
  with_file_size_limit(0, [&] {  // every write fails: latest.tmp cannot get its line
    try {
      publish(dir, 6, 0);
    } catch (const CheckpointError& e) {
      threw = true;
      msg = e.what();
    }
  });
  ASSERT_TRUE(threw);
  EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
  EXPECT_NE(msg.find("latest.tmp"), std::string::npos) << msg;
  EXPECT_EQ(get("latest"), "step_00000003.h5\n");
  EXPECT_FALSE(fs::exists(dir + "/latest.tmp"));
  EXPECT_FALSE(fs::exists(dir + "/.step_00000006.h5.tmp"));
  EXPECT_FALSE(fs::exists(dir + "/step_00000006.h5")) << "a complete file that latest never names";
  EXPECT_EQ(latest_checkpoint(dir), dir + "/step_00000003.h5");
}

TEST_F(CheckpointDir, PublishRenamesAndPointsLatestAndCleansStaleTemporaries) {
  put(".step_00000002.h5.tmp", "died");
  put("latest.tmp", "");
  put(".step_00000004.h5.tmp", "done");
  EXPECT_EQ(publish(dir, 4, 0), dir + "/step_00000004.h5");
  EXPECT_EQ(get("latest"), "step_00000004.h5\n");
  EXPECT_EQ(get("step_00000004.h5"), "done");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
}

TEST_F(CheckpointDir, StartUpCheckNamesTheOsError) {
  put("a_file", "x");
  try {
    check_writable_dir(dir + "/a_file/ckpt");
    FAIL() << "a directory below a file passed";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("Not a directory"), std::string::npos) << e.what();
  }
  check_writable_dir(dir + "/new/ckpt");  // created
  EXPECT_TRUE(fs::is_directory(dir + "/new/ckpt"));
  EXPECT_TRUE(fs::is_empty(dir + "/new/ckpt")) << "the probe file stayed";
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into a read-only directory: the Permission denied case needs a non-root user";
  fs::create_directories(dir + "/ro");
  fs::permissions(dir + "/ro", fs::perms::owner_read | fs::perms::owner_exec);
  try {
    check_writable_dir(dir + "/ro");
    FAIL() << "an unwritable directory passed";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("Permission denied"), std::string::npos) << e.what();
  }
  fs::permissions(dir + "/ro", fs::perms::owner_all);
}

}  // namespace
}  // namespace tandem::ckpt
