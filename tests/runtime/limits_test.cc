// Instance isolation on the process runtime (docs/runtime.md, "Limits and
// isolation"): resources.memory and resources.cpu enforced by the best
// mechanism the machine offers (cgroup v2 controllers, cgroup v1
// hierarchies, RLIMIT_AS), an instance killed at its memory limit reported
// OOMKilled, and instances run as an unprivileged user. Each test prints the
// mechanism it exercised and skips, saying why, only where that mechanism is
// unavailable.

#include "runtime/limits.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "runtime/cgroup.h"
#include "runtime/process_runtime.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using testing::Eventually;
using testing::ReadFile;
using testing::TempDir;

constexpr int64_t kMi = 1 << 20;
constexpr char kPython[] = "/usr/bin/python3";

// Allocates (and touches) 8 MiB at a time up to 512 MiB, then waits: far
// past a 64Mi limit, so only the limit stops it.
constexpr char kHog[] = R"(import sys, time
chunks = []
for i in range(64):
    chunks.append(b"x" * (8 << 20))
    print("allocated", (i + 1) * 8, "MiB", flush=True)
print("never stopped", flush=True)
time.sleep(1000)
)";

class LimitsTest : public ::testing::Test {
 protected:
  ProcessRuntimeOptions Options() {
    ProcessRuntimeOptions o;
    o.data_dir = dir_.path() + "/data";
    // Under the ephemeral range (process_runtime_test.cc says why).
    o.port_min = 14000;
    o.port_max = 15999;
    o.backoff_base = absl::Seconds(60);  // no restart within a test
    return o;
  }

  void Make(ProcessRuntimeOptions o) {
    rt_ = std::make_unique<ProcessRuntime>(std::move(o));
    rt_->SetListener([this](const InstanceChange& c) {
      absl::MutexLock l(&mu_);
      changes_.push_back(c);
    });
  }

  void TearDown() override {
    if (!rt_) return;
    for (const auto& i : rt_->List())
      rt_->Stop(i.id(), absl::ZeroDuration()).IgnoreError();
    EXPECT_TRUE(rt_->WaitForNoInstances(absl::Seconds(20)));
    rt_->Shutdown(false);
  }

  InstanceRequest Request(std::vector<std::string> argv, int64_t memory,
                          int64_t cpu_millis) {
    InstanceRequest req;
    req.namespace_ = "default";
    req.app = "iso";
    req.template_hash = "h1";
    req.revision = 1;
    for (const auto& a : argv) req.tmpl.add_command(a);
    req.tmpl.mutable_resources()->set_memory_bytes(memory);
    req.tmpl.mutable_resources()->set_cpu_millis(cpu_millis);
    // A process that never listens: readiness does not matter here.
    return req;
  }

  std::optional<tidal::v1::Instance> Find(const std::string& id) {
    for (const auto& i : rt_->List()) {
      if (i.id() == id) return i;
    }
    return std::nullopt;
  }

  bool HadEvent(const std::string& reason) {
    absl::MutexLock l(&mu_);
    for (const auto& c : changes_) {
      if (c.event_reason == reason) return true;
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<ProcessRuntime> rt_;
  absl::Mutex mu_;
  std::vector<InstanceChange> changes_ ABSL_GUARDED_BY(mu_);
};

// The bar: a memory hog with resources.memory 64Mi is killed and reported
// OOMKilled (instance reason, last_state, Warning event). Where no cgroup
// memory controller is writable, memory is an RLIMIT_AS: the hog's
// allocation fails instead (MemoryError, exit code 1), which is checked.
TEST_F(LimitsTest, MemoryHogIsKilledAndReportedOOMKilled) {
  if (access(kPython, X_OK) != 0) GTEST_SKIP() << kPython << " is missing";
  Make(Options());
  const std::string mech = rt_->MemoryLimits();
  std::cout << "mechanism exercised: memory " << mech << "\n";
  auto inst = rt_->Start(Request({kPython, "-c", kHog}, 64 * kMi, 0));
  ASSERT_TRUE(inst.ok()) << inst.status();
  const std::string id = inst->id();
  if (mech == "cgroup1" || mech == "cgroup2") {
    ASSERT_TRUE(Eventually(
        [&] {
          auto i = Find(id);
          // The listener hears of it just after List() shows it.
          return i && i->phase() == "CrashLoopBackOff" && HadEvent("BackOff");
        },
        absl::Seconds(60)))
        << ReadFile(inst->log_path());
    auto i = Find(id);
    ASSERT_TRUE(i);
    EXPECT_EQ(i->reason(), "OOMKilled") << i->ShortDebugString();
    EXPECT_EQ(i->last_state().reason(), "OOMKilled");
    EXPECT_EQ(i->last_state().signal(), 9);
    EXPECT_EQ(i->last_state().exit_code(), 137);
    EXPECT_TRUE(absl::StrContains(i->message(), "OOMKilled")) << i->message();
    EXPECT_TRUE(absl::StrContains(i->last_state().message(), "64Mi"))
        << i->last_state().message();
    EXPECT_TRUE(HadEvent("OOMKilled"));
    EXPECT_TRUE(HadEvent("BackOff"));
    const std::string log = ReadFile(inst->log_path());
    EXPECT_TRUE(absl::StrContains(log, "allocated 8 MiB")) << log;
    EXPECT_FALSE(absl::StrContains(log, "never stopped")) << log;
  } else {
    ASSERT_EQ(mech, "rlimit");
    std::cout << "no writable cgroup memory controller: checked that the "
                 "hog's allocation fails under RLIMIT_AS instead\n";
    ASSERT_TRUE(Eventually([&] {
      auto i = Find(id);
      return i && i->phase() == "CrashLoopBackOff";
    }));
    auto i = Find(id);
    EXPECT_EQ(i->last_state().reason(), "Error");
    EXPECT_EQ(i->last_state().exit_code(), 1);
    EXPECT_TRUE(absl::StrContains(ReadFile(inst->log_path()), "MemoryError"));
  }
}

// --instance-limits rlimit (and the fallback where no cgroup controller is
// usable): memory is RLIMIT_AS; the hog's allocation fails (MemoryError),
// it is not OOMKilled.
TEST_F(LimitsTest, RlimitModeFailsTheHogsAllocation) {
  if (access(kPython, X_OK) != 0) GTEST_SKIP() << kPython << " is missing";
  ProcessRuntimeOptions o = Options();
  o.limits = "rlimit";
  Make(o);
  ASSERT_EQ(rt_->MemoryLimits(), "rlimit");
  ASSERT_EQ(rt_->CpuLimits(), "none");
  std::cout << "mechanism exercised: memory rlimit\n";
  auto inst = rt_->Start(Request({kPython, "-c", kHog}, 64 * kMi, 500));
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(inst->id());
    return i && i->phase() == "CrashLoopBackOff" && HadEvent("BackOff");
  }));
  auto i = Find(inst->id());
  EXPECT_EQ(i->reason(), "CrashLoopBackOff");
  EXPECT_EQ(i->last_state().reason(), "Error");
  EXPECT_EQ(i->last_state().exit_code(), 1);
  const std::string log = ReadFile(inst->log_path());
  EXPECT_TRUE(absl::StrContains(log, "MemoryError")) << log;
  EXPECT_FALSE(absl::StrContains(log, "never stopped")) << log;
  EXPECT_FALSE(HadEvent("OOMKilled"));
}

// resources.cpu 250m and resources.memory 64Mi are written where the
// mechanism keeps them: cpu.max "25000 100000" / memory.max (cgroup v2), or
// cpu.cfs_quota_us 25000 with cfs_period_us 100000 / memory.limit_in_bytes
// (cgroup v1).
TEST_F(LimitsTest, LimitsAreWrittenToTheInstancesCgroups) {
  Make(Options());
  const std::string mem = rt_->MemoryLimits(), cpu = rt_->CpuLimits();
  std::cout << "mechanism exercised: memory " << mem << ", cpu " << cpu << "\n";
  if (cpu == "none" && mem == "rlimit")
    GTEST_SKIP() << "no writable cgroup memory or cpu controller here";
  auto inst = rt_->Start(Request({"/bin/sleep", "1000"}, 64 * kMi, 250));
  ASSERT_TRUE(inst.ok()) << inst.status();
  const std::string v2 = rt_->CgroupOf(inst->id());
  const std::vector<std::string> v1 = rt_->LimitCgroupsOf(inst->id());
  auto v1_with = [&](const std::string& file) -> std::string {
    for (const auto& d : v1) {
      struct stat st;
      if (stat((d + "/" + file).c_str(), &st) == 0) return d;
    }
    return "";
  };
  auto trimmed = [](const std::string& path) {
    return std::string(absl::StripAsciiWhitespace(ReadFile(path)));
  };
  if (cpu == "cgroup2") {
    EXPECT_EQ(trimmed(v2 + "/cpu.max"), "25000 100000");
  } else if (cpu == "cgroup1") {
    const std::string d = v1_with("cpu.cfs_quota_us");
    ASSERT_FALSE(d.empty());
    EXPECT_EQ(trimmed(d + "/cpu.cfs_quota_us"), "25000");
    EXPECT_EQ(trimmed(d + "/cpu.cfs_period_us"), "100000");
  } else {
    std::cout << "cpu: no writable cgroup cpu controller; not checked\n";
  }
  if (mem == "cgroup2") {
    EXPECT_EQ(trimmed(v2 + "/memory.max"), absl::StrCat(64 * kMi));
  } else if (mem == "cgroup1") {
    const std::string d = v1_with("memory.limit_in_bytes");
    ASSERT_FALSE(d.empty());
    EXPECT_EQ(trimmed(d + "/memory.limit_in_bytes"), absl::StrCat(64 * kMi));
  }
  // The process is in them.
  const std::string pid = absl::StrCat(inst->pid());
  for (const auto& d : v1) {
    std::vector<std::string> pids =
        absl::StrSplit(ReadFile(d + "/cgroup.procs"), '\n', absl::SkipEmpty());
    EXPECT_NE(std::find(pids.begin(), pids.end(), pid), pids.end()) << d;
  }
  // Deleting the instance removes its v1 cgroups.
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::ZeroDuration()).ok());
  ASSERT_TRUE(rt_->WaitForNoInstances(absl::Seconds(20)));
  for (const auto& d : v1) {
    struct stat st;
    EXPECT_NE(stat(d.c_str(), &st), 0) << d << " is left";
  }
}

// The Uid and Gid lines of /proc/<pid>/status: "real effective saved fs".
std::string StatusLine(pid_t pid, const std::string& key) {
  for (absl::string_view line :
       absl::StrSplit(ReadFile(absl::StrCat("/proc/", pid, "/status")), '\n')) {
    if (absl::ConsumePrefix(&line, key + ":"))
      return std::string(absl::StripAsciiWhitespace(line));
  }
  return "";
}

// instance_user (tidald --instance-user, default nobody as root): the
// process runs as that user with its groups and HOME, writes its log
// through the FIFO tidald opened, and listens on its port (the sample app
// becomes ready).
TEST_F(LimitsTest, InstanceRunsAsTheConfiguredUser) {
  if (geteuid() != 0) GTEST_SKIP() << "only root can switch users";
  ProcessRuntimeOptions o = Options();
  o.instance_user = "nobody";
  Make(o);
  ASSERT_EQ(rt_->InstanceUserName(), "nobody");
  std::cout << "mechanism exercised: setuid to nobody\n";
  auto inst =
      rt_->Start(Request({"/bin/sh", "-c",
                          "echo \"uid=$(id -u) user=$USER home=$HOME\"; "
                          "exec " +
                              testing::SampleAppPath()},
                         0, 0));
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(inst->id());
    return i && i->ready();
  })) << ReadFile(inst->log_path());
  const pid_t pid = static_cast<pid_t>(inst->pid());
  const std::string uid = StatusLine(pid, "Uid");
  std::cout << "Uid: " << uid << "\n";
  std::vector<std::string> uids =
      absl::StrSplit(uid, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  ASSERT_EQ(uids.size(), 4u) << uid;
  for (const auto& u : uids) EXPECT_EQ(u, "65534") << uid;
  EXPECT_NE(StatusLine(pid, "Gid").rfind("0", 0), 0u);
  EXPECT_EQ(StatusLine(pid, "Groups").find(" 0 "), std::string::npos);
  // The output reaches the log through the runtime's pipe reader, which may
  // lag the instance's readiness (its port accepts) by a little.
  std::string log;
  EXPECT_TRUE(Eventually([&] {
    log = ReadFile(inst->log_path());
    return absl::StrContains(log, "listening");
  })) << log;
  EXPECT_TRUE(absl::StrContains(log, "uid=65534 user=nobody")) << log;
}

// instance_user per-namespace (tidald's default as root): each namespace's
// instances run as a uid of their own, so one tenant's instance cannot read
// another's environment (its secret values) nor signal its processes; the
// same namespace keeps its uid across a restart of the runtime.
TEST_F(LimitsTest, EachNamespaceRunsAsAUserOfItsOwn) {
  if (geteuid() != 0) GTEST_SKIP() << "only root can switch users";
  ProcessRuntimeOptions o = Options();
  o.instance_user = "per-namespace";
  o.instance_uid_first = 1879048192;
  o.instance_uid_last = 1879048192 + 99;
  Make(o);
  std::cout << "mechanism exercised: a uid per namespace\n";
  auto in = [&](const std::string& ns, const std::string& script) {
    InstanceRequest req = Request({"/bin/sh", "-c", script}, 0, 0);
    req.namespace_ = ns;
    req.tmpl.add_env()->set_name("SECRET");
    req.tmpl.mutable_env(0)->set_value("s3cret-of-" + ns);
    return rt_->Start(req);
  };
  auto a = in("team-a", "echo uid=$(id -u); exec sleep 1000");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(Eventually(
      [&] { return absl::StrContains(ReadFile(a->log_path()), "uid="); }));
  const pid_t victim = static_cast<pid_t>(a->pid());
  auto b =
      in("team-b",
         absl::StrCat("echo uid=$(id -u) user=$USER; ", "cat /proc/", victim,
                      "/environ || echo environ-denied; ", "kill -0 ", victim,
                      " || echo kill-denied; ", "exec sleep 1000"));
  ASSERT_TRUE(b.ok()) << b.status();
  std::string log;
  ASSERT_TRUE(Eventually([&] {
    log = ReadFile(b->log_path());
    return absl::StrContains(log, "kill-denied");
  })) << log;
  EXPECT_TRUE(absl::StrContains(log, "environ-denied")) << log;
  EXPECT_FALSE(absl::StrContains(log, "s3cret-of-team-a")) << log;
  EXPECT_TRUE(absl::StrContains(log, "user=tidal-team-b")) << log;
  const std::string uid_a = StatusLine(victim, "Uid");
  const std::string uid_b = StatusLine(static_cast<pid_t>(b->pid()), "Uid");
  EXPECT_NE(uid_a, uid_b);
  EXPECT_TRUE(absl::StartsWith(uid_a, "18790481")) << uid_a;
  // The same namespace again, after a restart: the same uid.
  for (const auto& i : rt_->List())
    rt_->Stop(i.id(), absl::ZeroDuration()).IgnoreError();
  ASSERT_TRUE(rt_->WaitForNoInstances(absl::Seconds(20)));
  Make(o);
  auto again = in("team-a", "echo uid=$(id -u); exec sleep 1000");
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(Eventually(
      [&] { return absl::StrContains(ReadFile(again->log_path()), "uid="); }));
  EXPECT_EQ(StatusLine(static_cast<pid_t>(again->pid()), "Uid"), uid_a);
}

// A working directory the instance's user may not enter fails the start
// with the reason (and the user) in the instance's message.
TEST_F(LimitsTest, WorkingDirClosedToTheUserIsReported) {
  if (geteuid() != 0) GTEST_SKIP() << "only root can switch users";
  ProcessRuntimeOptions o = Options();
  o.instance_user = "nobody";
  Make(o);
  TempDir closed;  // mkdtemp: 0700, root's
  auto req = Request({"/bin/sleep", "1000"}, 0, 0);
  req.tmpl.set_working_dir(closed.path());
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(inst->id());
    return i && i->phase() == "CrashLoopBackOff";
  }));
  auto i = Find(inst->id());
  EXPECT_TRUE(absl::StrContains(i->message(),
                                "chdir " + closed.path() + " as user nobody"))
      << i->message();
  EXPECT_TRUE(absl::StrContains(i->message(), "Permission denied"))
      << i->message();
  EXPECT_EQ(i->last_state().reason(), "StartError");
}

bool Enables(const std::string& dir, const std::string& c) {
  for (absl::string_view w :
       absl::StrSplit(ReadFile(dir + "/cgroup.subtree_control"),
                      absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    if (w == c) return true;
  }
  return false;
}

// The cgroup v2 design (limits.h, EnableV2Controller): a controller is
// enabled down the chain of cgroups to the instance root, and refused where
// a cgroup on the way holds processes ("no internal processes"), as tidald's
// own would. Exercised with whatever controller this machine's cgroup v2
// offers (here: hugetlb; memory and cpu are on cgroup v1), in a test
// subtree below the cgroup2 mount.
TEST(CgroupV2ControllersTest, EnabledDownTheChainRefusedThroughProcesses) {
  auto mount_or = Cgroup2MountPoint();
  if (!mount_or.ok()) GTEST_SKIP() << mount_or.status();
  const std::string mount(absl::StripSuffix(*mount_or, "/"));
  std::vector<std::string> offered =
      absl::StrSplit(ReadFile(mount + "/cgroup.controllers"),
                     absl::ByAnyChar(" \n"), absl::SkipEmpty());
  if (offered.empty())
    GTEST_SKIP() << mount << " offers no controller to exercise with";
  // One that is not enabled below the mount yet, if any (then the test
  // enables it at the top too, and disables it again after).
  std::string c = offered.front();
  for (const auto& o : offered) {
    if (!Enables(mount, o)) c = o;
  }
  const bool top_had = Enables(mount, c);
  const std::string base = absl::StrCat(mount, "/tidal-limits-test-", getpid());
  if (mkdir(base.c_str(), 0755) != 0)
    GTEST_SKIP() << "cannot make cgroups under " << mount;
  std::cout << "mechanism exercised: cgroup2 controller " << c << " under "
            << base << "\n";
  const std::string root = base + "/ok/tidal";
  ASSERT_TRUE(MakeCgroupDirs(root).ok());
  absl::Status s = EnableV2Controller(mount, root, c);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(Enables(base, c));
  EXPECT_TRUE(Enables(base + "/ok", c));
  EXPECT_TRUE(Enables(root, c));
  // An instance cgroup below the root gets the controller's files.
  ASSERT_TRUE(MakeCgroupDirs(root + "/inst").ok());
  EXPECT_TRUE(
      absl::StrContains(ReadFile(root + "/inst/cgroup.controllers"), c));

  // A cgroup with a process in it (like tidald's own) on the way: refused,
  // and said why.
  const std::string busy = base + "/busy";
  ASSERT_TRUE(MakeCgroupDirs(busy + "/tidal").ok());
  int hold[2];
  ASSERT_EQ(pipe2(hold, O_CLOEXEC), 0);
  pid_t child = fork();
  if (child == 0) {
    close(hold[1]);  // EOF once the parent closes its end
    char x;
    (void)!read(hold[0], &x, 1);
    _exit(0);
  }
  close(hold[0]);
  ASSERT_TRUE(InstanceCgroups::AddProcess(busy, child).ok());
  s = EnableV2Controller(mount, busy + "/tidal", c);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.message(), "holds processes")) << s;
  std::cout << "refused: " << s.message() << "\n";
  EXPECT_FALSE(Enables(busy, c));
  close(hold[1]);
  waitpid(child, nullptr, 0);

  for (const std::string& d :
       {root + "/inst", root, base + "/ok", busy + "/tidal", busy, base}) {
    EXPECT_EQ(rmdir(d.c_str()), 0) << d << ": " << strerror(errno);
  }
  if (!top_had) {
    WriteCgroupFile(mount + "/cgroup.subtree_control", "-" + c).IgnoreError();
  }
}

}  // namespace
}  // namespace tidal
