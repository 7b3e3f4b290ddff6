// Deleting an instance ends every process it started, also those that called
// setsid() or double-forked, and also after tidald restarted and adopted it.
// Each test runs once per mechanism: "cgroup" (cgroup v2, skipped where it
// is not writable) and "subreaper" (forced with cgroup_root "off").

#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "runtime/process_runtime.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using testing::Eventually;
using testing::ReadFile;
using testing::TempDir;

// A process as it was when first seen: pid and start time (so a reused pid
// is not mistaken for it).
struct Seen {
  pid_t pid = 0;
  std::string start;  // /proc/<pid>/stat field 22
  std::string what;
};

// Field `n` (1-based) of /proc/<pid>/stat, "" if the process is gone.
std::string StatField(pid_t pid, int n) {
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  size_t p = stat.rfind(')');
  if (p == std::string::npos) return "";
  std::vector<std::string> f = absl::StrSplit(stat.substr(p + 2), ' ');
  return n - 3 < static_cast<int>(f.size()) ? f[n - 3] : "";
}

// Alive: exists, same start time, not a zombie.
bool Alive(const Seen& s) {
  return StatField(s.pid, 22) == s.start && StatField(s.pid, 3) != "Z";
}
// Gone for good: no such process (or another one with the pid): reaped.
bool Reaped(const Seen& s) { return StatField(s.pid, 22) != s.start; }

class ContainmentTest : public ::testing::TestWithParam<std::string> {
 protected:
  ProcessRuntimeOptions Options() {
    ProcessRuntimeOptions o;
    o.data_dir = dir_.path() + "/data";
    // Under the ephemeral range (process_runtime_test.cc says why).
    o.port_min = 10000;
    o.port_max = 11999;
    o.backoff_base = absl::Seconds(30);  // no restart within a test
    o.log_check_interval = absl::Milliseconds(20);
    o.cgroup_root = GetParam() == "cgroup" ? "" : "off";
    return o;
  }

  void SetUp() override {
    rt_ = std::make_unique<ProcessRuntime>(Options());
    if (rt_->Containment() != GetParam()) {
      GTEST_SKIP() << "mechanism " << GetParam()
                   << " unavailable here (runtime chose " << rt_->Containment()
                   << ")";
    }
    std::cout << "mechanism exercised: " << rt_->Containment() << "\n";
  }

  void TearDown() override {
    if (rt_) rt_->Shutdown(true);
    for (const auto& s : seen_) {
      if (Alive(s)) kill(s.pid, SIGKILL);
    }
  }

  // A shell instance that leaves three kinds of descendants and writes
  // their pids: a double fork, a setsid, and a setsid inside a double fork.
  InstanceRequest Escapers() {
    const std::string d = dir_.path();
    InstanceRequest req;
    req.namespace_ = "default";
    req.app = "escape";
    req.template_hash = "h1";
    req.revision = 1;
    req.tmpl.add_command("/bin/sh");
    req.tmpl.add_args("-c");
    req.tmpl.add_args(absl::StrCat(
        "( sleep 1001 & echo $! > ", d, "/double.tmp; mv ", d, "/double.tmp ",
        d, "/double ); setsid sleep 1002 & echo $! > ", d, "/setsid.tmp; mv ",
        d, "/setsid.tmp ", d, "/setsid; ( setsid sleep 1003 & echo $! > ", d,
        "/both.tmp; mv ", d, "/both.tmp ", d, "/both ); exec sleep 1004"));
    req.tmpl.set_termination_grace_period_seconds(2);
    return req;
  }

  // Waits for the pid files and remembers those processes.
  void SeeEscapers(pid_t leader) {
    for (const char* name : {"double", "setsid", "both"}) {
      std::string path = dir_.path() + "/" + name;
      ASSERT_TRUE(Eventually([&] { return !ReadFile(path).empty(); })) << name;
      Seen s;
      ASSERT_TRUE(
          absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(path)), &s.pid));
      s.start = StatField(s.pid, 22);
      s.what = name;
      ASSERT_FALSE(s.start.empty()) << name << " is not running";
      // Until it runs sleep, setsid(1) may not have called setsid() yet.
      EXPECT_TRUE(Eventually([&] {
        return ReadFile(absl::StrCat("/proc/", s.pid, "/comm")) == "sleep\n";
      })) << name;
      // Not in the leader's session (except the double fork, which only
      // lost its parent).
      if (std::string(name) != "double") {
        EXPECT_NE(StatField(s.pid, 6), std::to_string(leader)) << name;
      }
      seen_.push_back(s);
    }
    Seen l;
    l.pid = leader;
    l.start = StatField(leader, 22);
    l.what = "leader";
    seen_.push_back(l);
  }

  void ExpectAllDead() {
    for (const auto& s : seen_) {
      EXPECT_FALSE(Alive(s))
          << s.what << " (pid " << s.pid << ") survived the delete";
    }
    if (GetParam() == "subreaper") {
      // Orphans were reparented to this process (the subreaper) and reaped.
      for (const auto& s : seen_) {
        EXPECT_TRUE(Eventually([&] { return Reaped(s); }))
            << s.what << " (pid " << s.pid << ") left as a zombie";
      }
    }
  }

  bool Removed(const std::string& id, ProcessRuntime* rt) {
    for (const auto& i : rt->List()) {
      if (i.id() == id) return false;
    }
    return true;
  }

  TempDir dir_;
  std::unique_ptr<ProcessRuntime> rt_;
  std::vector<Seen> seen_;
};

TEST_P(ContainmentTest, SetsidAndDoubleForkDieWithDelete) {
  auto inst = rt_->Start(Escapers());
  ASSERT_TRUE(inst.ok()) << inst.status();
  SeeEscapers(static_cast<pid_t>(inst->pid()));
  if (GetParam() == "cgroup") {
    std::string cg = rt_->CgroupOf(inst->id());
    ASSERT_FALSE(cg.empty());
    for (const auto& s : seen_) {
      EXPECT_TRUE(absl::StrContains(
          ReadFile(absl::StrCat("/proc/", s.pid, "/cgroup")), "/" + inst->id()))
          << s.what << " is not in the instance's cgroup";
    }
  }
  for (const auto& s : seen_) ASSERT_TRUE(Alive(s)) << s.what;
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Seconds(2)).ok());
  // Removal is reported once every process of the instance is gone.
  ASSERT_TRUE(rt_->WaitForNoInstances(absl::Seconds(10)));
  ExpectAllDead();
  if (GetParam() == "cgroup") {
    struct stat st;
    EXPECT_NE(stat(rt_->CgroupOf(inst->id()).c_str(), &st), 0);
  }
}

TEST_P(ContainmentTest, DescendantsOfACrashedInstanceDie) {
  InstanceRequest req = Escapers();
  // The leader exits on its own once it is told to (after the test has
  // seen its descendants).
  const std::string go = dir_.path() + "/go";
  req.tmpl.set_args(
      1, absl::StrReplaceAll(
             req.tmpl.args(1),
             {{"exec sleep 1004",
               absl::StrCat("until [ -e ", go, " ]; do sleep 0.01; done; ",
                            "exit 3")}}));
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  SeeEscapers(static_cast<pid_t>(inst->pid()));
  seen_.pop_back();  // the leader exits by itself
  { std::ofstream(go) << "go"; }
  ASSERT_TRUE(Eventually([&] {
    for (const auto& i : rt_->List()) {
      if (i.id() == inst->id()) return i.phase() == "CrashLoopBackOff";
    }
    return false;
  }));
  EXPECT_TRUE(Eventually([&] {
    for (const auto& s : seen_) {
      if (Alive(s)) return false;
    }
    return true;
  })) << "descendants outlived their crashed leader";
}

TEST_P(ContainmentTest, AdoptedInstanceIsDeletedWhole) {
  auto inst = rt_->Start(Escapers());
  ASSERT_TRUE(inst.ok()) << inst.status();
  SeeEscapers(static_cast<pid_t>(inst->pid()));
  // tidald goes away and a new one adopts the instance.
  rt_->Shutdown(false);
  rt_.reset();
  for (const auto& s : seen_) ASSERT_TRUE(Alive(s)) << s.what;
  rt_ = std::make_unique<ProcessRuntime>(Options());
  ASSERT_TRUE(rt_->Adopt().ok());
  ASSERT_EQ(rt_->List().size(), 1u);
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Seconds(2)).ok());
  ASSERT_TRUE(rt_->WaitForNoInstances(absl::Seconds(10)));
  ExpectAllDead();
}

TEST_P(ContainmentTest, LeftoversOfALeaderThatDiedMeanwhileAreKilled) {
  auto inst = rt_->Start(Escapers());
  ASSERT_TRUE(inst.ok()) << inst.status();
  SeeEscapers(static_cast<pid_t>(inst->pid()));
  rt_->Shutdown(false);
  rt_.reset();
  // The leader dies while no tidald runs; its descendants live on.
  Seen leader = seen_.back();
  ASSERT_EQ(kill(leader.pid, SIGKILL), 0);
  ASSERT_TRUE(Eventually([&] { return !Alive(leader); }));
  for (size_t i = 0; i + 1 < seen_.size(); ++i) {
    ASSERT_TRUE(Alive(seen_[i])) << seen_[i].what;
  }
  // The next tidald drops the record and kills what the instance left.
  rt_ = std::make_unique<ProcessRuntime>(Options());
  ASSERT_TRUE(rt_->Adopt().ok());
  EXPECT_TRUE(rt_->List().empty());
  EXPECT_TRUE(Eventually([&] {
    for (const auto& s : seen_) {
      if (Alive(s)) return false;
    }
    return true;
  })) << "processes of a dead instance survived the restart";
}

// A daemon that double-forks with setsid and clears its environment: only a
// cgroup holds it.
TEST_P(ContainmentTest, DaemonWithCleanEnvironmentDiesWithDelete) {
  if (GetParam() != "cgroup") {
    GTEST_SKIP() << "the subreaper cannot attribute an orphan that cleared "
                    "its environment (docs/runtime.md, Containment)";
  }
  const std::string pidfile = dir_.path() + "/daemon";
  InstanceRequest req = Escapers();
  req.tmpl.clear_command();
  req.tmpl.clear_args();
  req.tmpl.add_command("python3");
  req.tmpl.add_args("-c");
  req.tmpl.add_args(
      absl::StrCat("import os, time\n"
                   "if os.fork() == 0:\n"
                   "    os.setsid()\n"
                   "    if os.fork() == 0:\n"
                   "        open('",
                   pidfile, ".tmp', 'w').write(str(os.getpid()))\n",
                   "        os.rename('", pidfile, ".tmp', '", pidfile,
                   "')\n"
                   "        os.execve('/bin/sleep', ['sleep', '1005'], {})\n"
                   "    os._exit(0)\n"
                   "time.sleep(1000)\n"));
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] { return !ReadFile(pidfile).empty(); },
                         absl::Seconds(20)));
  Seen d;
  ASSERT_TRUE(absl::SimpleAtoi(ReadFile(pidfile), &d.pid));
  d.start = StatField(d.pid, 22);
  d.what = "daemon";
  seen_.push_back(d);
  ASSERT_TRUE(Eventually([&] { return Alive(d); }));
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Seconds(2)).ok());
  ASSERT_TRUE(rt_->WaitForNoInstances(absl::Seconds(10)));
  ExpectAllDead();
}

// Empty instance cgroups that nothing refers to (their records went with a
// data directory) are removed at adoption once a minute old.
TEST_P(ContainmentTest, StaleEmptyCgroupsAreRemovedAtAdoption) {
  if (GetParam() != "cgroup") GTEST_SKIP() << "cgroup mode only";
  auto inst = rt_->Start(Escapers());
  ASSERT_TRUE(inst.ok()) << inst.status();
  const std::string root =
      rt_->CgroupOf(inst->id()).substr(0, rt_->CgroupOf(inst->id()).rfind('/'));
  const std::string stale = root + "/stale-" + std::to_string(getpid());
  const std::string fresh = root + "/fresh-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(stale.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(fresh.c_str(), 0755), 0);
  timeval old[2] = {{time(nullptr) - 120, 0}, {time(nullptr) - 120, 0}};
  ASSERT_EQ(utimes(stale.c_str(), old), 0);
  // Another runtime (its own data directory) sharing the cgroup root.
  ProcessRuntimeOptions o = Options();
  o.data_dir = dir_.path() + "/data2";
  auto second = std::make_unique<ProcessRuntime>(o);
  ASSERT_TRUE(second->Adopt().ok());
  struct stat st;
  EXPECT_NE(stat(stale.c_str(), &st), 0) << "stale cgroup kept";
  EXPECT_EQ(stat(fresh.c_str(), &st), 0) << "a young cgroup was removed";
  // The running instance's cgroup (populated) stays.
  EXPECT_EQ(stat(rt_->CgroupOf(inst->id()).c_str(), &st), 0);
  second->Shutdown(false);
  rmdir(fresh.c_str());
}

// A tidald killed while starting an instance under a given id leaves its
// cgroup (empty: the child exits when its parent dies) and no record. The
// next start under that id reclaims it instead of refusing the id.
TEST_P(ContainmentTest, StartUnderAnIdReclaimsTheCgroupAnInterruptedStartLeft) {
  if (GetParam() != "cgroup") GTEST_SKIP() << "cgroup mode only";
  InstanceRequest req;
  req.namespace_ = "default";
  req.app = "left";
  req.template_hash = "h1";
  req.revision = 1;
  req.tmpl.add_command("/bin/sleep");
  req.tmpl.add_args("1005");
  auto first = rt_->Start(req);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string cg = rt_->CgroupOf(first->id());
  req.id = "left-" + std::to_string(getpid());
  const std::string left = cg.substr(0, cg.rfind('/')) + "/" + req.id;
  ASSERT_EQ(mkdir(left.c_str(), 0755), 0);
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  EXPECT_EQ(inst->id(), req.id);
  EXPECT_EQ(rt_->CgroupOf(req.id), left);
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(
        ReadFile(absl::StrCat("/proc/", inst->pid(), "/cgroup")),
        left.substr(left.rfind('/')));
  }));
  // Under an id that does run here: still refused.
  auto again = rt_->Start(req);
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, ContainmentTest,
                         ::testing::Values("cgroup", "subreaper"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tidal
