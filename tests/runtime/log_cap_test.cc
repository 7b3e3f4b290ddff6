// The log cap holds as bytes are written: instances write to a FIFO that the
// runtime copies into capped, rotated files, dropping (and counting) what is
// over the rate limit or the free-space reserve; instances keep running and
// logging across a restart of the runtime.

#include <signal.h>
#include <sys/stat.h>

#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "api/service.h"
#include "common/clock.h"
#include "fakes/memory_store.h"
#include "gtest/gtest.h"
#include "runtime/process_runtime.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using testing::Eventually;
using testing::ReadFile;
using testing::TempDir;

constexpr int64_t kCap = 1 << 20;

int64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : 0;
}

// The number of the last complete "line N" in the log, or in <log>.1 when
// the log has none yet (just rotated); 0 if none.
int64_t LastLine(const std::string& log) {
  for (const std::string& path : {log, log + ".1"}) {
    std::string text = ReadFile(path);
    text.erase(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n'));
    int64_t last = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      int64_t n = 0;
      if (absl::ConsumePrefix(&line, "line ") && absl::SimpleAtoi(line, &n))
        last = n;
    }
    if (last > 0) return last;
  }
  return 0;
}

class LogCapTest : public ::testing::Test {
 protected:
  ProcessRuntimeOptions Options() {
    ProcessRuntimeOptions o;
    o.data_dir = dir_.path();
    // Under the ephemeral range (process_runtime_test.cc says why).
    o.port_min = 16000;
    o.port_max = 17999;
    o.backoff_base = absl::Seconds(30);
    o.log_max_bytes = kCap;
    o.log_rotated_files = 1;
    o.log_rate_bytes = 1 << 20;  // 1 MiB/s, burst 4 MiB
    return o;
  }

  void TearDown() override {
    if (rt_) rt_->Shutdown(true);
  }

  void Make(ProcessRuntimeOptions o) {
    if (rt_) rt_->Shutdown(true);
    rt_ = std::make_unique<ProcessRuntime>(o);
  }

  InstanceRequest Shell(const std::string& command,
                        const std::vector<std::string>& args) {
    InstanceRequest req;
    req.namespace_ = "default";
    req.app = "logs";
    req.template_hash = "l1";
    req.revision = 1;
    req.tmpl.add_command(command);
    for (const auto& a : args) req.tmpl.add_args(a);
    req.tmpl.set_termination_grace_period_seconds(1);
    return req;
  }

  std::optional<tidal::v1::Instance> Find(const std::string& id) {
    for (const auto& i : rt_->List()) {
      if (i.id() == id) return i;
    }
    return std::nullopt;
  }

  int64_t Dropped(const std::string& id) {
    auto i = Find(id);
    return i ? i->log_dropped_bytes() : -1;
  }

  // Every file of the log: <log> and <log>.1 (and a .2 that must not exist).
  int64_t OnDisk(const std::string& log) {
    return FileSize(log) + FileSize(log + ".1") + FileSize(log + ".2");
  }

  // Watches a writer until `enough` holds, checking the bound on every look.
  void WatchBound(const std::string& id, const std::string& log,
                  const std::function<bool()>& enough, absl::Duration timeout) {
    // cap x (1 + rotated files): marker lines count against the cap too.
    const int64_t bound = kCap * 2;
    int64_t most = 0;
    bool done = Eventually(
        [&] {
          int64_t now = OnDisk(log);
          most = std::max(most, now);
          EXPECT_LE(now, bound) << "log files over the cap";
          return enough();
        },
        timeout);
    EXPECT_TRUE(done) << "dropped so far: " << Dropped(id);
    std::cout << "largest on disk: " << most << " bytes (bound " << bound
              << "), dropped " << Dropped(id) << " bytes\n";
  }

  TempDir dir_;
  std::unique_ptr<ProcessRuntime> rt_;
};

TEST_F(LogCapTest, YesStaysUnderTheCapAndDropsAreCounted) {
  Make(Options());
  // 64 MB as fast as `yes` writes, then idle.
  auto inst = rt_->Start(
      Shell("/bin/sh", {"-c", "yes | head -c 64000000; exec sleep 1000"}));
  ASSERT_TRUE(inst.ok()) << inst.status();
  const std::string log = inst->log_path();
  // Kept: at most the 4 MiB burst plus 1 MiB/s; the rest is dropped.
  WatchBound(
      inst->id(), log, [&] { return Dropped(inst->id()) >= 48000000; },
      absl::Seconds(30));
  EXPECT_EQ(FileSize(log + ".2"), 0);
  std::string text = ReadFile(log);
  EXPECT_LE(static_cast<int64_t>(text.size()), kCap + 200);
  // Rotated: the current file and .1 hold `yes` lines and marker lines.
  EXPECT_GT(FileSize(log + ".1"), 0);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(ReadFile(log) + ReadFile(log + ".1"),
                             "[tidal] dropped ");
  })) << "no marker line for the dropped output";
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || absl::StartsWith(line, "[tidal] dropped ")) continue;
    // A line cut by a drop or a rotation may be partial: only "y"s.
    EXPECT_EQ(line.find_first_not_of('y'), absl::string_view::npos) << line;
  }
  // Readable through the runtime's log API.
  EXPECT_FALSE(testing::ReadLogs(*rt_, inst->id()).empty());
}

TEST_F(LogCapTest, FiftyMegabytesPerSecondWriterStaysUnderTheCap) {
  Make(Options());
  // 50 MB/s for two seconds, in 500 KB writes, paced by the writer.
  auto inst = rt_->Start(Shell(
      "python3",
      {"-c",
       "import os, sys, time\n"
       "chunk = (b'x' * 99 + b'\\n') * 5000\n"
       "start = time.monotonic()\n"
       "for i in range(200):\n"
       "    os.write(1, chunk)\n"
       "    wait = start + (i + 1) * 0.01 - time.monotonic()\n"
       "    if wait > 0: time.sleep(wait)\n"
       "sys.stderr.write('rate %.1f MB/s\\n' % (100 / (time.monotonic() - "
       "start)))\n"
       "time.sleep(1000)\n"}));
  ASSERT_TRUE(inst.ok()) << inst.status();
  const std::string log = inst->log_path();
  WatchBound(
      inst->id(), log, [&] { return Dropped(inst->id()) >= 90000000; },
      absl::Seconds(30));
  std::string text = ReadFile(log) + ReadFile(log + ".1");
  EXPECT_TRUE(absl::StrContains(text, "[tidal] dropped "));
}

TEST_F(LogCapTest, NothingIsWrittenBelowTheFreeSpaceReserve) {
  ProcessRuntimeOptions o = Options();
  o.log_rate_bytes = 0;
  o.log_min_free_ratio = 1.0;  // never that much free: the reserve is hit
  Make(o);
  auto inst = rt_->Start(
      Shell("/bin/sh", {"-c", "head -c 100000 /dev/zero; exec sleep 1000"}));
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] { return Dropped(inst->id()) == 100000; }))
      << Dropped(inst->id());
  EXPECT_EQ(OnDisk(inst->log_path()), 0);
}

TEST_F(LogCapTest, WriterSurvivesARestartOfTheRuntimeAndKeepsLogging) {
  ProcessRuntimeOptions o = Options();
  o.log_rate_bytes = 0;
  Make(o);
  // Writes numbered lines as fast as it can, forever.
  auto inst = rt_->Start(
      Shell("/bin/sh",
            {"-c", "i=0; while :; do echo \"line $i\"; i=$((i+1)); done"}));
  ASSERT_TRUE(inst.ok()) << inst.status();
  const std::string log = inst->log_path();
  ASSERT_TRUE(Eventually([&] { return LastLine(log) > 1000; }));
  const pid_t pid = static_cast<pid_t>(inst->pid());
  rt_->Shutdown(false);
  rt_.reset();
  // Nobody reads: the pipe fills and the writer blocks in write() (with an
  // anonymous pipe it would have died of SIGPIPE instead).
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(ReadFile(absl::StrCat("/proc/", pid, "/wchan")),
                             "pipe_write");
  })) << "writer is not blocked on its pipe: "
      << ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const int64_t before = LastLine(log);
  ASSERT_GT(before, 1000);
  rt_ = std::make_unique<ProcessRuntime>(o);
  ASSERT_TRUE(rt_->Adopt().ok());
  auto adopted = Find(inst->id());
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->pid(), pid);
  // The new runtime drains the FIFO and the writer goes on.
  EXPECT_TRUE(Eventually([&] { return LastLine(log) > before + 100000; }))
      << "before " << before << ", now " << LastLine(log);
  EXPECT_LE(OnDisk(log), kCap * 2 + 400);
  EXPECT_EQ(kill(pid, 0), 0);
}

// What `tidalctl logs` and `tidalctl logs -f` read: the API's Logs stream
// over the real runtime, while the log is rotated many times.
TEST_F(LogCapTest, LogsAndFollowReadThroughRotations) {
  ProcessRuntimeOptions o = Options();
  o.log_max_bytes = 64 << 10;
  o.log_rate_bytes = 0;
  Make(o);
  testing::MemoryStore store;
  ServiceOptions so;
  so.poll_interval = absl::Milliseconds(5);
  TidalService svc(&store, rt_.get(), RealClock::Get(), so);
  auto inst = rt_->Start(
      Shell("/bin/sh", {"-c",
                        "i=0; while [ $i -lt 40000 ]; do echo \"line $i\"; "
                        "i=$((i+1)); done; echo finished; exec sleep 1000"}));
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] { return FileSize(inst->log_path()) > 0; }));

  v1::LogsRequest req;
  req.set_namespace_("default");
  req.set_app("logs");
  req.set_follow(true);
  std::string got;
  ASSERT_TRUE(svc.Logs(
                     req,
                     [&](const v1::LogChunk& c) {
                       EXPECT_EQ(c.instance(), inst->id());
                       got += c.data();
                       return true;
                     },
                     [&] { return absl::StrContains(got, "finished\n"); })
                  .ok());
  // Followed across rotations: more than two files' worth of lines (a
  // follower may miss the tail of a file renamed between two of its polls).
  EXPECT_GT(got.size(), 2u * (64 << 10));
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(got, '\n')) {
    if (absl::StartsWith(line, "line ")) ++lines;
  }
  EXPECT_GT(lines, 10000);

  // Without -f: what is on disk now (the current file).
  req.set_follow(false);
  std::string now;
  ASSERT_TRUE(svc.Logs(
                     req,
                     [&](const v1::LogChunk& c) {
                       now += c.data();
                       return true;
                     },
                     nullptr)
                  .ok());
  EXPECT_TRUE(absl::StrContains(now, "finished\n"));
  EXPECT_LE(now.size(), 64u << 10);
}

}  // namespace
}  // namespace tidal
