// IoWatchdog (parallel/io_watchdog.h): a phase that outlives its timeout ends the process with
// Tandem's line naming what, the phase, the note and the diagnosis; phases that end in time,
// idle time and a disabled watchdog never fire. (A death test: the process it kills is a fork.)
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "parallel/io_watchdog.h"

namespace tandem {
namespace {

TEST(IoWatchdogDeathTest, AStuckPhaseEndsTheProcessWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        IoWatchdog dog("checkpoint file out/x.h5", 0.2, [] { return std::string("the disk has 0.0 MiB free"); });
        dog.note("the write had failed: No space left on device");
        dog.phase("closing the file");
        std::this_thread::sleep_for(std::chrono::seconds(30));
      },
      "tandem: rank 0: checkpoint file out/x.h5: closing the file did not finish within 0.2 s "
      "\\(parallel.timeout_s\\); the write had failed: No space left on device; the disk has 0.0 MiB free; "
      "aborting the job");
}

TEST(IoWatchdog, PhasesThatEndInTimeAndIdleTimeNeverFire) {
  IoWatchdog dog("test", 3.0);  // generous: a loaded machine must not make a 50 ms phase late
  for (int i = 0; i < 5; ++i) {
    dog.phase("short " + std::to_string(i));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  dog.idle();
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // longer than the timeout, idle
  IoWatchdog off("disabled", 0);
  off.phase("anything");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  SUCCEED();
}

}  // namespace
}  // namespace tandem
