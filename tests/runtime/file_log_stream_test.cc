// FileLogStream over log files: tail, end of a non-following read, and
// following across rotations and truncations (runtime/file_log_stream.h).

#include "runtime/file_log_stream.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using testing::TempDir;

void Write(const std::string& path, const std::string& data,
           bool append = true) {
  std::ofstream out(path, append ? std::ios::app : std::ios::trunc);
  out << data;
}

LogOptions Opts(int64_t tail, bool follow) {
  LogOptions o;
  o.tail_lines = tail;
  o.follow = follow;
  return o;
}

// Reads until `want` has come (or the deadline).
std::string ReadUntil(LogStream& s, const std::string& want,
                      std::string got = "") {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (got.size() < want.size() && absl::Now() < deadline) {
    auto data = s.Next(absl::Milliseconds(100));
    if (!data.ok()) break;
    got += *data;
  }
  return got;
}

TEST(FileLogStreamTest, WithoutFollowReadsWhatIsThereThenEnds) {
  TempDir dir;
  const std::string log = dir.path() + "/a.log";
  Write(log, "one\ntwo\nthree\n");
  FileLogStream all(log, Opts(0, false));
  auto data = all.Next(absl::ZeroDuration());
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, "one\ntwo\nthree\n");
  Write(log, "four\n");  // after the stream started: not part of it
  EXPECT_EQ(all.Next(absl::Seconds(1)).status().code(),
            absl::StatusCode::kOutOfRange);

  FileLogStream tail(log, Opts(2, false));
  EXPECT_EQ(*tail.Next(absl::ZeroDuration()), "three\nfour\n");
  EXPECT_EQ(tail.Next(absl::ZeroDuration()).status().code(),
            absl::StatusCode::kOutOfRange);

  FileLogStream missing(dir.path() + "/none.log", Opts(0, false));
  EXPECT_EQ(missing.Next(absl::ZeroDuration()).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(FileLogStreamTest, LargeFilesComeInChunks) {
  TempDir dir;
  const std::string log = dir.path() + "/big.log";
  const std::string big(3 << 20, 'x');
  Write(log, big);
  FileLogStream s(log, Opts(0, false));
  std::string got;
  int chunks = 0;
  for (;;) {
    auto data = s.Next(absl::ZeroDuration());
    if (!data.ok()) break;
    EXPECT_LE(data->size(), 1u << 20);
    got += *data;
    ++chunks;
  }
  EXPECT_EQ(got.size(), big.size());
  EXPECT_GE(chunks, 3);
}

// What `tidalctl logs -f --tail 1` sees while the file is appended to,
// rotated (renamed, a new one started) and truncated in place.
TEST(FileLogStreamTest, FollowsAcrossRotationAndTruncation) {
  TempDir dir;
  const std::string log = dir.path() + "/a.log";
  Write(log, "one\ntwo\nthree\n");
  FileLogStream s(log, Opts(1, true), absl::Milliseconds(1));
  std::string got = ReadUntil(s, "three\n");
  EXPECT_EQ(got, "three\n");
  // Nothing new: "" after the wait.
  auto idle = s.Next(absl::Milliseconds(10));
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(*idle, "");
  Write(log, "four\n");
  got = ReadUntil(s, "three\nfour\n", got);
  EXPECT_EQ(got, "three\nfour\n");
  // Written just before the rotation, not yet read: still read, from the
  // renamed file, before the new one.
  Write(log, "tail of old\n");
  ASSERT_EQ(std::rename(log.c_str(), (log + ".1").c_str()), 0);
  Write(log, "five\n", /*append=*/false);
  got = ReadUntil(s, "three\nfour\ntail of old\nfive\n", got);
  EXPECT_EQ(got, "three\nfour\ntail of old\nfive\n");
  // Copy-truncate (instances that write to their file themselves).
  Write(log, "", /*append=*/false);
  Write(log, "six\n");
  got = ReadUntil(s, "three\nfour\ntail of old\nfive\nsix\n", got);
  EXPECT_EQ(got, "three\nfour\ntail of old\nfive\nsix\n");
}

TEST(FileLogStreamTest, FollowWaitsForAFileNotWrittenYet) {
  TempDir dir;
  const std::string log = dir.path() + "/later.log";
  FileLogStream s(log, Opts(5, true), absl::Milliseconds(1));
  auto none = s.Next(absl::Milliseconds(5));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");
  Write(log, "hello\n");
  EXPECT_EQ(ReadUntil(s, "hello\n"), "hello\n");
}

TEST(FileLogStreamTest, CancelWakesAWaitingNext) {
  TempDir dir;
  const std::string log = dir.path() + "/quiet.log";
  Write(log, "");
  FileLogStream s(log, Opts(0, true), absl::Minutes(10));
  absl::Time start = absl::Now();
  // Before or while Next waits: either way it returns at once.
  std::thread canceller([&] { s.Cancel(); });
  auto r = s.Next(absl::Minutes(10));
  canceller.join();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
  EXPECT_LT(absl::Now() - start, absl::Minutes(1));
  EXPECT_EQ(s.Next(absl::ZeroDuration()).status().code(),
            absl::StatusCode::kCancelled);
}

TEST(FileLogStreamTest, TailLines) {
  EXPECT_EQ(TailLines("a\nb\nc\n", 2), "b\nc\n");
  EXPECT_EQ(TailLines("a\nb\nc", 2), "b\nc");
  EXPECT_EQ(TailLines("a\nb\n", 5), "a\nb\n");
  EXPECT_EQ(TailLines("a\nb\n", 0), "a\nb\n");
  EXPECT_EQ(TailLines("", 3), "");
}

}  // namespace
}  // namespace tidal
