// /proc/<pid>/stat parsing and reading (runtime/proc_stat.h).

#include "runtime/proc_stat.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>

#include "gtest/gtest.h"

namespace tidal {
namespace {

// A stat line of a process whose command name holds spaces and a ')'.
// Fields: 1 pid, 2 comm, 3 state, 4 ppid, 5 pgrp, 6 session, 7 tty, 8 tpgid,
// 9 flags, 10-13 faults, 14 utime, 15 stime, 16 cutime, 17 cstime,
// 18 priority, 19 nice, 20 threads, 21 itrealvalue, 22 starttime, 23 vsize,
// 24 rss, then more.
constexpr char kLine[] =
    "4242 (my (odd) app) S 1 4240 4240 0 -1 4194560 10 0 0 0 "
    "7 3 2 1 20 0 1 0 987654 12345678 321 18446744073709551615 1 1 0 0\n";

TEST(ProcStatTest, ParsesFieldsAfterACommandNameWithParentheses) {
  ProcStat st;
  ASSERT_TRUE(ParseProcStat(kLine, &st));
  EXPECT_EQ(st.state, 'S');
  EXPECT_EQ(st.pgid, 4240);
  EXPECT_EQ(st.cpu_ticks, 7u + 3u + 2u + 1u);
  EXPECT_EQ(st.start_ticks, 987654u);
  EXPECT_EQ(st.rss_pages, 321);
}

TEST(ProcStatTest, RejectsTruncatedLines) {
  ProcStat st;
  EXPECT_FALSE(ParseProcStat("", &st));
  EXPECT_FALSE(ParseProcStat("12 (no closing paren S 1 2", &st));
  EXPECT_FALSE(ParseProcStat("12 (sh) S 1 12 12 0 -1 0 1 2", &st));
}

TEST(ProcStatTest, ReadsThisProcess) {
  ProcStat st;
  ASSERT_TRUE(ReadProcStat(getpid(), &st));
  EXPECT_EQ(st.pgid, getpgrp());
  EXPECT_GT(st.start_ticks, 0u);
  EXPECT_GT(st.rss_pages, 0);
  EXPECT_TRUE(ProcessMatches(getpid(), st.start_ticks));
  // Another start time: a reused pid, not the recorded process.
  EXPECT_FALSE(ProcessMatches(getpid(), st.start_ticks + 1));
  EXPECT_FALSE(ProcessMatches(0, st.start_ticks));
}

TEST(ProcStatTest, ZombiesAndExitedProcessesDoNotMatch) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_GT(pid, 0);
  // Not reaped yet: a zombie (once it has exited).
  ProcStat st;
  bool zombie = false;
  for (int i = 0; i < 10000 && !zombie; ++i) {
    ASSERT_TRUE(ReadProcStat(pid, &st));
    zombie = st.state == 'Z';
    if (!zombie) usleep(1000);
  }
  ASSERT_TRUE(zombie);
  EXPECT_FALSE(ProcessMatches(pid, st.start_ticks));
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  EXPECT_FALSE(ReadProcStat(pid, &st));
  EXPECT_FALSE(ProcessMatches(pid, st.start_ticks));
}

TEST(ProcStatTest, GroupUsageSumsTheGroupAndChecksItsLeader) {
  // A child leading its own process group, with a child of its own in it.
  pid_t leader = fork();
  if (leader == 0) {
    setpgid(0, 0);
    if (fork() == 0) {
      for (;;) pause();
    }
    for (;;) pause();
  }
  ASSERT_GT(leader, 0);
  setpgid(leader, leader);  // no race with the child's own call
  ProcStat st;
  ASSERT_TRUE(ReadProcStat(leader, &st));
  auto usage = ReadGroupUsage({{leader, st.start_ticks}});
  ASSERT_EQ(usage.count(leader), 1u);
  EXPECT_TRUE(usage[leader].leader_ok);
  EXPECT_GT(usage[leader].rss_pages, 0);
  // A leader that started at another time is not this group's.
  usage = ReadGroupUsage({{leader, st.start_ticks + 1}});
  EXPECT_FALSE(usage[leader].leader_ok);
  EXPECT_TRUE(ReadGroupUsage({}).empty());
  kill(-leader, SIGKILL);
  waitpid(leader, nullptr, 0);
}

TEST(ProcStatTest, BootIdAndUnits) {
  EXPECT_EQ(BootId().size(), 36u);  // a UUID
  EXPECT_GT(TicksPerSecond(), 0);
  EXPECT_GT(PageSize(), 0);
}

}  // namespace
}  // namespace tidal
