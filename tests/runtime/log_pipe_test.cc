// Copy-truncate rotation of log files written directly by instances
// (runtime/log_pipe.h, CopyTruncateIfOver).

#include "runtime/log_pipe.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using testing::ReadFile;
using testing::TempDir;

TEST(CopyTruncateTest, RotatesOnlyFilesOverTheCap) {
  TempDir dir;
  const std::string log = dir.path() + "/app.log";
  // Missing: nothing to do.
  EXPECT_TRUE(CopyTruncateIfOver(log, 10).ok());
  // The instance keeps its O_APPEND descriptor across the rotation.
  int fd = open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "0123456789", 10), 10);
  EXPECT_TRUE(CopyTruncateIfOver(log, 10).ok());  // at the cap: kept
  EXPECT_EQ(ReadFile(log), "0123456789");
  ASSERT_EQ(write(fd, "ab\n", 3), 3);
  EXPECT_TRUE(CopyTruncateIfOver(log, 10).ok());
  EXPECT_EQ(ReadFile(log + ".1"), "0123456789ab\n");
  EXPECT_EQ(ReadFile(log), "");
  // Writes go on at the start of the emptied file.
  ASSERT_EQ(write(fd, "next\n", 5), 5);
  EXPECT_EQ(ReadFile(log), "next\n");
  close(fd);
  std::ifstream tmp(log + ".1.tmp");
  EXPECT_FALSE(tmp.good());
}

}  // namespace
}  // namespace tidal
