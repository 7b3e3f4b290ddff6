// ProcessRuntime with real child processes of tidal-sample-app and /bin/sh.

#include "runtime/process_runtime.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "fakes/free_port.h"
#include "gtest/gtest.h"
#include "runtime/instance_record.pb.h"
#include "runtime/test_util.h"

namespace tidal {
namespace {

using testing::Eventually;
using testing::FreeLoopbackPort;
using testing::HttpConn;
using testing::HttpGet;
using testing::ReadFile;
using testing::ReadLogs;
using testing::SampleAppPath;
using testing::TempDir;

// Collects every change the runtime reports.
class Recorder {
 public:
  Runtime::Listener listener() {
    return [this](const InstanceChange& c) {
      absl::MutexLock l(&mu_);
      changes_.push_back(c);
    };
  }
  std::vector<InstanceChange> changes() {
    absl::MutexLock l(&mu_);
    return changes_;
  }
  std::vector<InstanceChange> events(const std::string& reason) {
    std::vector<InstanceChange> out;
    for (const auto& c : changes()) {
      if (c.event_reason == reason) out.push_back(c);
    }
    return out;
  }
  bool Removed(const std::string& id) {
    for (const auto& c : changes()) {
      if (c.removed && c.instance.id() == id) return true;
    }
    return false;
  }

 private:
  absl::Mutex mu_;
  std::vector<InstanceChange> changes_ ABSL_GUARDED_BY(mu_);
};

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

// Processes in process group `pgid` that are not zombies.
int LiveGroupMembers(pid_t pgid) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])))
      continue;
    std::string stat = ReadFile(e.path().string() + "/stat");
    size_t p = stat.rfind(')');
    if (p == std::string::npos || p + 2 >= stat.size()) continue;
    char state = stat[p + 2];
    // Fields after ')': state ppid pgrp ...
    int ppid = 0, pgrp = 0;
    if (sscanf(stat.c_str() + p + 4, "%d %d", &ppid, &pgrp) != 2) continue;
    if (pgrp == pgid && state != 'Z') ++n;
  }
  return n;
}

class ProcessRuntimeTest : public ::testing::Test {
 protected:
  ProcessRuntimeOptions Options() {
    ProcessRuntimeOptions o;
    o.data_dir = dir_.path();
    // Under the kernel's ephemeral range (32768 and up) and apart from the
    // other tests' ranges: a port handed to an instance that has not bound
    // it yet (StartupTimeoutOnlyPastTheBound's 60 s starter) must not be
    // taken meanwhile by a listener bound to port 0 in a test running beside
    // this one (seen in CI: the probe reached it and the starter was ready).
    o.port_min = 30000;
    o.port_max = 32767;
    o.backoff_base = absl::Milliseconds(100);
    o.backoff_max = absl::Seconds(2);
    o.log_check_interval = absl::Milliseconds(50);
    o.extra_path = {testing::BuildDir() + "/examples"};
    return o;
  }

  void SetUp() override {
    rt_ = std::make_unique<ProcessRuntime>(Options());
    rt_->SetListener(rec_.listener());
  }

  void TearDown() override {
    if (rt_) rt_->Shutdown(true);
    for (pid_t pid : extra_pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }

  InstanceRequest SampleApp(std::vector<std::string> args = {}) {
    InstanceRequest req;
    req.namespace_ = "default";
    req.app = "hello";
    req.template_hash = "abc123";
    req.revision = 1;
    req.tmpl.add_command("tidal-sample-app");
    for (auto& a : args) req.tmpl.add_args(a);
    req.tmpl.set_termination_grace_period_seconds(5);
    return req;
  }

  InstanceRequest Shell(const std::string& script) {
    InstanceRequest req;
    req.namespace_ = "default";
    req.app = "sh";
    req.template_hash = "sh1";
    req.revision = 1;
    req.tmpl.add_command("/bin/sh");
    req.tmpl.add_args("-c");
    req.tmpl.add_args(script);
    return req;
  }

  std::optional<tidal::v1::Instance> Find(const std::string& id,
                                          Runtime* rt = nullptr) {
    for (const auto& i : (rt != nullptr ? rt : rt_.get())->List()) {
      if (i.id() == id) return i;
    }
    return std::nullopt;
  }

  bool WaitReady(const std::string& id, int restarts = -1,
                 absl::Duration timeout = absl::Seconds(10),
                 Runtime* rt = nullptr) {
    return Eventually(
        [&] {
          auto i = Find(id, rt);
          return i && i->ready() && (restarts < 0 || i->restarts() == restarts);
        },
        timeout);
  }

  TempDir dir_;
  Recorder rec_;
  Recorder rec2_;
  std::unique_ptr<ProcessRuntime> rt_;
  std::vector<pid_t> extra_pids_;
};

TEST_F(ProcessRuntimeTest, StartBecomesReadyQuicklyAndServes) {
  auto t0 = std::chrono::steady_clock::now();
  auto inst = rt_->Start(SampleApp({"--version", "v9"}));
  ASSERT_TRUE(inst.ok()) << inst.status();
  std::printf("Start() call: %.2f ms\n",
              std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count());
  EXPECT_EQ(inst->phase(), "Starting");
  EXPECT_FALSE(inst->ready());
  EXPECT_GT(inst->pid(), 0);
  EXPECT_GE(inst->port(), 30000);
  EXPECT_LE(inst->port(), 39999);
  EXPECT_TRUE(absl::StartsWith(inst->id(), "hello-"));
  EXPECT_EQ(inst->id().size(), std::string("hello-").size() + 5);

  ASSERT_TRUE(WaitReady(inst->id()));
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
  std::printf("start -> ready (as seen by List): %.2f ms\n", ms);
  EXPECT_LT(ms, 2000);
  auto now = Find(inst->id());
  EXPECT_EQ(now->phase(), "Running");
  EXPECT_TRUE(now->has_ready_time());

  auto r = HttpGet(inst->port(), "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, absl::StrCat("hello from v9 (pid ", inst->pid(), ")\n"));
  EXPECT_EQ(r->headers["x-version"], "v9");

  // Events: Started, then a readiness change.
  auto started = rec_.events("Started");
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].event_type, "Normal");
  EXPECT_TRUE(Eventually([&] {
    for (const auto& c : rec_.changes()) {
      if (c.instance.ready()) return true;
    }
    return false;
  }));
  // Log file has the app's output; the record exists.
  EXPECT_EQ(inst->log_path(), absl::StrCat(dir_.path(), "/logs/default_hello_",
                                           inst->id(), ".log"));
  EXPECT_TRUE(Eventually([&] {
    return absl::StrContains(ReadFile(inst->log_path()), "listening on");
  }));
  // The same through the runtime's log stream.
  EXPECT_TRUE(absl::StrContains(ReadLogs(*rt_, inst->id()), "listening on"));
  struct stat st;
  EXPECT_EQ(
      stat(absl::StrCat(dir_.path(), "/instances/", inst->id(), ".pb").c_str(),
           &st),
      0);
}

// A start refused for a limit says which one (the reconciler turns it into
// a FailedCreate event on the app).
TEST_F(ProcessRuntimeTest, StartBeyondALimitSaysWhy) {
  rt_->Shutdown(true);
  ProcessRuntimeOptions o = Options();
  o.max_instances = 2;
  rt_ = std::make_unique<ProcessRuntime>(o);
  ASSERT_TRUE(rt_->Start(Shell("exec sleep 100")).ok());
  ASSERT_TRUE(rt_->Start(Shell("exec sleep 100")).ok());
  auto third = rt_->Start(Shell("exec sleep 100"));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(third.status().message(),
                                "instance limit reached: 2 instances"))
      << third.status();
  EXPECT_EQ(rt_->List().size(), 2u);

  // One port in the range, held by the first instance.
  rt_->Shutdown(true);
  o = Options();
  const int port = FreeLoopbackPort();
  ASSERT_NE(port, 0);
  o.port_min = o.port_max = port;
  rt_ = std::make_unique<ProcessRuntime>(o);
  auto first = rt_->Start(Shell("exec sleep 100"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = rt_->Start(Shell("exec sleep 100"));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(second.status().message(),
                                absl::StrCat("no free port in ", port)))
      << second.status();
  // Nothing is left of the refused starts: no record, FIFO or cgroup.
  EXPECT_EQ(rt_->List().size(), 1u);
  int files = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(dir_.path() + "/instances")) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2);  // the running instance's record and FIFO
}

TEST_F(ProcessRuntimeTest, EnvironmentPortAndPath) {
  std::string envfile = dir_.path() + "/env.txt";
  InstanceRequest req = Shell("env > " + envfile + "; exec tidal-sample-app");
  auto* e = req.tmpl.add_env();
  e->set_name("GREETING");
  e->set_value("hi there");
  auto* p = req.tmpl.add_env();
  p->set_name("PORT");
  p->set_value("1");  // overridden by the runtime
  req.tmpl.set_working_dir(dir_.path());
  req.revision = 7;
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(WaitReady(inst->id()));
  std::string env = ReadFile(envfile);
  EXPECT_TRUE(
      absl::StrContains(env, absl::StrCat("\nPORT=", inst->port(), "\n")))
      << env;
  EXPECT_TRUE(absl::StrContains(env, "TIDAL_APP=sh\n")) << env;
  EXPECT_TRUE(absl::StrContains(env, "TIDAL_NAMESPACE=default\n")) << env;
  EXPECT_TRUE(absl::StrContains(
      env, absl::StrCat("TIDAL_INSTANCE=", inst->id(), "\n")));
  EXPECT_TRUE(absl::StrContains(env, "TIDAL_REVISION=7\n")) << env;
  EXPECT_TRUE(absl::StrContains(env, "GREETING=hi there\n")) << env;
  EXPECT_TRUE(
      absl::StrContains(env, "PATH=" + testing::BuildDir() + "/examples:"))
      << env;
  EXPECT_TRUE(absl::StrContains(env, "PWD=" + dir_.path())) << env;
  auto r = HttpGet(inst->port(), "/healthz");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

// Secrets (docs/secrets.md): a reference is resolved at Start, reaches the
// process's environment (restarts included) and never the instance record;
// a missing secret fails Start with CreateContainerConfigError.
TEST_F(ProcessRuntimeTest, SecretReferencesReachOnlyTheEnvironment) {
  rt_->Shutdown(true);
  const std::string value = "Pr0c-Runt1me-S3cr3t";
  int lookups = 0;
  ProcessRuntimeOptions o = Options();
  o.secret_resolver =
      [&](const std::string& ns, const std::string& name,
          const std::string& key) -> absl::StatusOr<std::string> {
    ++lookups;
    if (ns == "default" && name == "db" && key == "password") return value;
    return absl::NotFoundError(
        absl::StrCat("secret \"", ns, "/", name, "\" not found"));
  };
  rt_ = std::make_unique<ProcessRuntime>(o);
  rt_->SetListener(rec_.listener());
  const std::string envfile = dir_.path() + "/secret-env.txt";
  InstanceRequest req =
      Shell("echo \"DB=$DB\" >> " + envfile + "; exec tidal-sample-app");
  auto* e = req.tmpl.add_env();
  e->set_name("DB");
  e->mutable_value_from()->mutable_secret_key_ref()->set_name("db");
  e->mutable_value_from()->mutable_secret_key_ref()->set_key("password");
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(WaitReady(inst->id()));
  EXPECT_EQ(ReadFile(envfile), "DB=" + value + "\n");
  EXPECT_EQ(lookups, 1);
  // A restart after a crash keeps the value, without another lookup.
  kill(Find(inst->id())->pid(), SIGKILL);
  ASSERT_TRUE(WaitReady(inst->id(), 1));
  EXPECT_EQ(ReadFile(envfile), "DB=" + value + "\nDB=" + value + "\n");
  EXPECT_EQ(lookups, 1);
  for (const auto& f :
       std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!f.is_regular_file() || f.path() == envfile) continue;
    EXPECT_FALSE(absl::StrContains(ReadFile(f.path().string()), value))
        << f.path();
  }
  // A missing secret: nothing starts.
  e->mutable_value_from()->mutable_secret_key_ref()->set_name("gone");
  auto missing = rt_->Start(req);
  EXPECT_TRUE(absl::IsFailedPrecondition(missing.status()));
  EXPECT_EQ(missing.status().message(),
            "CreateContainerConfigError: env DB: secret \"default/gone\" not "
            "found");
  EXPECT_EQ(rt_->List().size(), 1u);
}

// Highly available mode: a node starts the instance its assignment names,
// under the assignment's id.
TEST_F(ProcessRuntimeTest, StartsUnderAGivenId) {
  InstanceRequest req = SampleApp();
  req.id = "hello-from-node-a.1";
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  EXPECT_EQ(inst->id(), "hello-from-node-a.1");
  ASSERT_TRUE(WaitReady(inst->id()));
  EXPECT_EQ(inst->log_path(), absl::StrCat(dir_.path(), "/logs/default_hello_",
                                           inst->id(), ".log"));
  auto r = HttpGet(inst->port(), "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);

  // The same id again, while it lives: refused, and nothing else starts.
  auto twice = rt_->Start(req);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kAlreadyExists)
      << twice.status();
  EXPECT_EQ(rt_->List().size(), 1u);

  for (const std::string& bad : std::vector<std::string>{
           "../etc", "a/b", "-lead", "sp ace", std::string(129, 'x')}) {
    req.id = bad;
    EXPECT_EQ(rt_->Start(req).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(rt_->List().size(), 1u);

  // Once it is gone, the id may be used again.
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Seconds(5)).ok());
  ASSERT_TRUE(rt_->WaitForNoInstances(absl::Seconds(10)));
  req.id = "hello-from-node-a.1";
  auto again = rt_->Start(req);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), req.id);
  EXPECT_TRUE(WaitReady(again->id()));
}

// Whether a TCP connection to ip:port is accepted.
bool Connects(const std::string& ip, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// On several hosts instances must be reachable from the other nodes: the
// runtime's host (tidald --instance-host) is where the instance listens
// (HOST), where it is probed and what it reports.
TEST_F(ProcessRuntimeTest, InstanceListensOnTheConfiguredHost) {
  rt_->Shutdown(true);
  ProcessRuntimeOptions o = Options();
  o.host = "127.0.0.2";
  rt_ = std::make_unique<ProcessRuntime>(o);
  auto inst = rt_->Start(SampleApp());
  ASSERT_TRUE(inst.ok()) << inst.status();
  EXPECT_EQ(inst->host(), "127.0.0.2");
  ASSERT_TRUE(WaitReady(inst->id()));
  EXPECT_EQ(Find(inst->id())->host(), "127.0.0.2");
  EXPECT_TRUE(Connects("127.0.0.2", inst->port()));
  EXPECT_FALSE(Connects("127.0.0.1", inst->port()));

  // Adopted by the next tidald: the same host.
  rt_->Shutdown(false);
  rt_ = std::make_unique<ProcessRuntime>(o);
  ASSERT_TRUE(rt_->Adopt().ok());
  ASSERT_TRUE(WaitReady(inst->id()));
  EXPECT_EQ(Find(inst->id())->host(), "127.0.0.2");
}

TEST_F(ProcessRuntimeTest, PortsAreDistinct) {
  std::set<int> ports;
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    auto inst = rt_->Start(SampleApp());
    ASSERT_TRUE(inst.ok()) << inst.status();
    ports.insert(inst->port());
    ids.push_back(inst->id());
  }
  EXPECT_EQ(ports.size(), 4u);
  for (const auto& id : ids) EXPECT_TRUE(WaitReady(id));
  EXPECT_EQ(rt_->List("default", "hello").size(), 4u);
  EXPECT_EQ(rt_->List("other", "").size(), 0u);
}

TEST_F(ProcessRuntimeTest, KillNineRestartsWithBackoffAndEvent) {
  auto inst = rt_->Start(SampleApp());
  ASSERT_TRUE(inst.ok());
  ASSERT_TRUE(WaitReady(inst->id()));
  pid_t old_pid = static_cast<pid_t>(inst->pid());
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(old_pid, SIGKILL), 0);
  ASSERT_TRUE(Eventually([&] { return !rec_.events("BackOff").empty(); }));
  double noticed_ms = std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - t0)
                          .count();
  std::printf("kill -9 -> BackOff event: %.2f ms\n", noticed_ms);
  auto backoff = rec_.events("BackOff")[0];
  EXPECT_EQ(backoff.event_type, "Warning");
  EXPECT_EQ(backoff.event_message,
            "back-off 100ms restarting failed instance (killed by signal 9)");
  EXPECT_EQ(backoff.instance.phase(), "CrashLoopBackOff");
  EXPECT_EQ(backoff.instance.reason(), "CrashLoopBackOff");
  ASSERT_TRUE(WaitReady(inst->id(), 1));
  auto now = Find(inst->id());
  EXPECT_NE(now->pid(), old_pid);
  EXPECT_EQ(now->restarts(), 1);
  EXPECT_EQ(now->port(), inst->port());
  EXPECT_TRUE(Eventually([&] {
    return ReadFile(absl::StrCat("/proc/", old_pid, "/stat")).empty();
  })) << "old process not reaped";
  auto r = HttpGet(now->port(), "/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, absl::StrCat("hello from v1 (pid ", now->pid(), ")\n"));
}

TEST_F(ProcessRuntimeTest, CrashLoopBackOffGrows) {
  auto inst = rt_->Start(SampleApp({"--exit-at-start", "3"}));
  ASSERT_TRUE(inst.ok());
  ASSERT_TRUE(Eventually([&] { return rec_.events("BackOff").size() >= 3; }));
  auto events = rec_.events("BackOff");
  EXPECT_EQ(events[0].event_message,
            "back-off 100ms restarting failed instance (exit code 3)");
  EXPECT_EQ(events[1].event_message,
            "back-off 200ms restarting failed instance (exit code 3)");
  EXPECT_EQ(events[2].event_message,
            "back-off 400ms restarting failed instance (exit code 3)");
  EXPECT_EQ(events[2].instance.restarts(), 2);
  auto now = Find(inst->id());
  ASSERT_TRUE(now.has_value());
  EXPECT_FALSE(now->ready());
  EXPECT_GE(now->restarts(), 2);
  // Stopping while in back-off removes it at once.
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Seconds(1)).ok());
  EXPECT_TRUE(Eventually([&] { return rec_.Removed(inst->id()); }));
  EXPECT_TRUE(rt_->List().empty());
}

TEST_F(ProcessRuntimeTest, MissingExecutableBacksOff) {
  InstanceRequest req = SampleApp();
  req.tmpl.set_command(0, "no-such-binary-tidal");
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] { return !rec_.events("BackOff").empty(); }));
  EXPECT_TRUE(absl::StrContains(
      rec_.events("BackOff")[0].event_message,
      "executable \"no-such-binary-tidal\" not found in PATH"));
}

TEST_F(ProcessRuntimeTest, LivenessFailureRestarts) {
  InstanceRequest req = SampleApp({"--unhealthy-after", "200ms"});
  auto* probe = req.tmpl.mutable_liveness_probe();
  probe->mutable_http_get()->set_path("/healthz");
  probe->set_initial_delay_seconds(
      1);  // liveness probes from the start, like kubelet
  probe->set_period_seconds(1);
  probe->set_failure_threshold(1);
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok());
  ASSERT_TRUE(WaitReady(inst->id()));
  ASSERT_TRUE(Eventually([&] { return !rec_.events("Killing").empty(); },
                         absl::Seconds(15)));
  auto unhealthy = rec_.events("Unhealthy");
  ASSERT_FALSE(unhealthy.empty());
  EXPECT_EQ(unhealthy[0].event_type, "Warning");
  EXPECT_EQ(unhealthy[0].event_message,
            "Liveness probe failed: HTTP probe failed with statuscode: 500");
  ASSERT_TRUE(Eventually([&] { return !rec_.events("BackOff").empty(); }));
  EXPECT_EQ(
      rec_.events("BackOff")[0].event_message,
      "back-off 100ms restarting failed instance (liveness probe failed)");
  ASSERT_TRUE(WaitReady(inst->id(), 1));
  EXPECT_NE(Find(inst->id())->pid(), inst->pid());
}

TEST_F(ProcessRuntimeTest, LivenessWaitsForFirstReadiness) {
  // Starts slowly; a liveness probe from t=0 with threshold 1 would kill it
  // before it listens. Liveness counts only once the instance was ready.
  InstanceRequest req = SampleApp({"--startup-delay", "1500ms"});
  auto* probe = req.tmpl.mutable_liveness_probe();
  probe->mutable_http_get()->set_path("/healthz");
  probe->set_period_seconds(1);
  probe->set_failure_threshold(1);
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok());
  ASSERT_TRUE(WaitReady(inst->id()));
  EXPECT_TRUE(rec_.events("Unhealthy").empty());
  EXPECT_TRUE(rec_.events("Killing").empty());
  EXPECT_EQ(Find(inst->id())->pid(), inst->pid());
  EXPECT_EQ(Find(inst->id())->restarts(), 0);
}

TEST_F(ProcessRuntimeTest, ReadinessHttpProbe) {
  InstanceRequest req = SampleApp({"--startup-delay", "150ms"});
  auto* probe = req.tmpl.mutable_readiness_probe();
  probe->mutable_http_get()->set_path("/healthz");
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok());
  ASSERT_TRUE(WaitReady(inst->id()));
  auto r = HttpGet(inst->port(), "/healthz");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

// Listens, but its readiness probe answers 500: marked ReadinessProbeFailed
// after failureThreshold answers counted once per period (not per fast
// probe), while the process keeps running.
TEST_F(ProcessRuntimeTest, NotReadyAnswersMarkTheInstance) {
  InstanceRequest req = SampleApp({"--unhealthy-after", "0"});
  auto* probe = req.tmpl.mutable_readiness_probe();
  probe->mutable_http_get()->set_path("/healthz");
  probe->set_period_seconds(1);
  probe->set_failure_threshold(2);
  const absl::Time started = absl::Now();
  auto inst = rt_->Start(req);
  ASSERT_TRUE(inst.ok());
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(inst->id());
    return i && i->reason() == kReasonReadinessProbeFailed;
  }));
  // Two answers one period apart: not before a second.
  EXPECT_GE(absl::Now() - started, absl::Seconds(1));
  auto i = Find(inst->id());
  EXPECT_FALSE(i->ready());
  EXPECT_EQ(i->restarts(), 0);
  EXPECT_EQ(i->pid(), inst->pid());
  EXPECT_NE(i->message().find("statuscode: 500"), std::string::npos)
      << i->message();
  EXPECT_TRUE(Alive(static_cast<pid_t>(inst->pid())));
  // The instance's state is updated before its listener hears of it (the
  // listener runs outside the runtime's lock): wait for the event too.
  ASSERT_TRUE(Eventually([&] { return !rec_.events("Unhealthy").empty(); }));
  EXPECT_EQ(rec_.events("Unhealthy")[0].instance.reason(),
            kReasonReadinessProbeFailed);
}

// Never opens its port: StartupTimeout once the startup bound passes, not
// before; a slow starter that listens within the bound is never marked.
TEST_F(ProcessRuntimeTest, StartupTimeoutOnlyPastTheBound) {
  rt_->Shutdown(true);
  ProcessRuntimeOptions o = Options();
  o.startup_timeout = absl::Milliseconds(1500);
  rt_ = std::make_unique<ProcessRuntime>(o);
  rt_->SetListener(rec_.listener());
  const absl::Time started = absl::Now();
  auto stuck = rt_->Start(SampleApp({"--startup-delay", "60s"}));
  auto slow = rt_->Start(SampleApp({"--startup-delay", "700ms"}));
  ASSERT_TRUE(stuck.ok());
  ASSERT_TRUE(slow.ok());
  ASSERT_TRUE(WaitReady(slow->id()));
  ASSERT_TRUE(Eventually([&] {
    auto i = Find(stuck->id());
    return i && i->reason() == kReasonStartupTimeout;
  }));
  EXPECT_GE(absl::Now() - started, absl::Milliseconds(1500));
  EXPECT_NE(Find(stuck->id())->message().find("refuses connections"),
            std::string::npos);
  EXPECT_EQ(Find(stuck->id())->restarts(), 0);
  // The event reaches the listener just after the mark is set.
  ASSERT_TRUE(
      Eventually([&] { return !rec_.events("StartupTimeout").empty(); }));
  auto marked = rec_.events("StartupTimeout");
  ASSERT_EQ(marked.size(), 1u);
  EXPECT_EQ(marked[0].instance.id(), stuck->id());
  EXPECT_TRUE(Find(slow->id())->reason().empty());
}

TEST_F(ProcessRuntimeTest, GracefulStopWithSigterm) {
  auto inst = rt_->Start(SampleApp());
  ASSERT_TRUE(inst.ok());
  ASSERT_TRUE(WaitReady(inst->id()));
  pid_t pid = static_cast<pid_t>(inst->pid());
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Seconds(10)).ok());
  auto during = Find(inst->id());
  if (during) {
    EXPECT_EQ(during->phase(), "Terminating");
  }
  ASSERT_TRUE(Eventually([&] { return rec_.Removed(inst->id()); }));
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
  // The instance's log says how far it got (a stop that timed out: did the
  // app see the signal, "signal 15, draining", or not?).
  const std::string log = ReadFile(inst->log_path());
  EXPECT_LT(ms, 5000) << log;
  EXPECT_TRUE(rec_.events("Killing").empty()) << log;
  EXPECT_TRUE(ReadFile(absl::StrCat("/proc/", pid, "/stat")).empty());
  EXPECT_TRUE(absl::StrContains(log, "drained, exiting")) << log;
  struct stat st;
  EXPECT_NE(
      stat(absl::StrCat(dir_.path(), "/instances/", inst->id(), ".pb").c_str(),
           &st),
      0);
  EXPECT_TRUE(rt_->List().empty());
  EXPECT_EQ(rt_->Stop(inst->id(), absl::Seconds(1)).code(),
            absl::StatusCode::kNotFound);
  // The log stays readable after the instance is gone.
  const std::string on_disk = ReadFile(inst->log_path());
  EXPECT_FALSE(on_disk.empty());
  EXPECT_EQ(ReadLogs(*rt_, inst->id()), on_disk);
  EXPECT_EQ(rt_->OpenLogs("no-such-instance", LogOptions()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ProcessRuntimeTest, SigkillAfterGrace) {
  auto inst = rt_->Start(Shell("trap '' TERM; sleep 100"));
  ASSERT_TRUE(inst.ok());
  pid_t pid = static_cast<pid_t>(inst->pid());
  // Wait for the shell to have started its sleep (a second process in the
  // group).
  ASSERT_TRUE(Eventually([&] {
    std::string children =
        ReadFile(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
    return !children.empty();
  }));
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Milliseconds(300)).ok());
  ASSERT_TRUE(Eventually([&] { return rec_.Removed(inst->id()); }));
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
  EXPECT_GE(ms, 290);
  EXPECT_LT(ms, 5000);
  auto killing = rec_.events("Killing");
  ASSERT_EQ(killing.size(), 1u);
  EXPECT_EQ(killing[0].event_message,
            "instance did not exit within 300ms of SIGTERM; sent SIGKILL");
  // The sleep got SIGKILL too (it may linger briefly as a zombie of init).
  EXPECT_TRUE(Eventually([&] { return LiveGroupMembers(pid) == 0; }))
      << "process group still has live members";
  EXPECT_TRUE(ReadFile(absl::StrCat("/proc/", pid, "/stat")).empty());
}

TEST_F(ProcessRuntimeTest, LogFileIsCapped) {
  rt_->Shutdown(true);
  ProcessRuntimeOptions o = Options();
  o.log_max_bytes = 64 << 10;
  rt_ = std::make_unique<ProcessRuntime>(o);
  auto inst =
      rt_->Start(Shell("i=0; while [ $i -lt 4000 ]; do echo \"line $i "
                       "...................................\"; "
                       "i=$((i+1)); done; echo done >&2; exec sleep 100"));
  ASSERT_TRUE(inst.ok());
  std::string log = inst->log_path();
  ASSERT_TRUE(Eventually([&] {
    struct stat st;
    return stat((log + ".1").c_str(), &st) == 0 &&
           stat(log.c_str(), &st) == 0 && st.st_size <= (64 << 10) &&
           absl::StrContains(ReadFile(log) + ReadFile(log + ".1"), "done");
  }));
  // The cap holds as bytes are written: no file is ever over it.
  std::string rotated = ReadFile(log + ".1");
  EXPECT_EQ(rotated.size(), 64u << 10);
  EXPECT_LE(ReadFile(log).size(), 64u << 10);
  EXPECT_TRUE(absl::StrContains(rotated, "line "));
}

TEST_F(ProcessRuntimeTest, AdoptionAfterRuntimeIsGone) {
  auto a = rt_->Start(SampleApp());
  auto b = rt_->Start(SampleApp({"--version", "v2"}));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(WaitReady(a->id()));
  ASSERT_TRUE(WaitReady(b->id()));
  // tidald goes away without stopping its instances.
  rt_->Shutdown(false);
  rt_.reset();
  EXPECT_TRUE(Alive(a->pid()));
  EXPECT_TRUE(Alive(b->pid()));

  // A record of a dead process and one whose pid was reused: both dropped.
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  runtime::InstanceRecord stale;
  stale.set_id("hello-dead1");
  stale.set_namespace_("default");
  stale.set_app("hello");
  stale.set_pid(dead);
  stale.set_start_ticks(12345);
  std::string data;
  stale.SerializeToString(&data);
  std::string stale_path = dir_.path() + "/instances/hello-dead1.pb";
  { std::ofstream(stale_path, std::ios::binary) << data; }
  runtime::InstanceRecord reused = stale;
  reused.set_id("hello-reuse");
  reused.set_pid(getpid());  // alive, but a different start time
  reused.set_start_ticks(1);
  reused.SerializeToString(&data);
  std::string reused_path = dir_.path() + "/instances/hello-reuse.pb";
  { std::ofstream(reused_path, std::ios::binary) << data; }

  // This process with its true start time, but recorded in an earlier boot.
  runtime::InstanceRecord old_boot = stale;
  old_boot.set_id("hello-oboot");
  old_boot.set_pid(getpid());
  {
    std::string st = ReadFile("/proc/self/stat");
    const char* f = st.c_str() + st.rfind(')') + 2;
    for (int field = 3; field < 22; ++field) f = strchr(f, ' ') + 1;
    old_boot.set_start_ticks(strtoull(f, nullptr, 10));
  }
  old_boot.set_boot_id("00000000-0000-0000-0000-000000000000");
  old_boot.SerializeToString(&data);
  std::string old_boot_path = dir_.path() + "/instances/hello-oboot.pb";
  { std::ofstream(old_boot_path, std::ios::binary) << data; }

  Recorder& rec2 = rec2_;  // outlives rt_ (TearDown stops it)
  rt_ = std::make_unique<ProcessRuntime>(Options());
  rt_->SetListener(rec2.listener());
  ASSERT_TRUE(rt_->Adopt().ok());
  auto list = rt_->List();
  ASSERT_EQ(list.size(), 2u);
  std::set<std::string> ids = {list[0].id(), list[1].id()};
  EXPECT_EQ(ids, (std::set<std::string>{a->id(), b->id()}));
  struct stat st;
  EXPECT_NE(stat(stale_path.c_str(), &st), 0);
  EXPECT_NE(stat(reused_path.c_str(), &st), 0);
  EXPECT_NE(stat(old_boot_path.c_str(), &st), 0);
  ASSERT_TRUE(WaitReady(a->id()));
  ASSERT_TRUE(WaitReady(b->id()));
  EXPECT_EQ(Find(a->id())->pid(), a->pid());
  EXPECT_EQ(Find(a->id())->port(), a->port());
  EXPECT_EQ(rec2.events("Adopted").size(), 2u);
  // Adopting again is a no-op (no duplicates).
  ASSERT_TRUE(rt_->Adopt().ok());
  EXPECT_EQ(rt_->List().size(), 2u);

  // Still supervised: a crash of an adopted instance is noticed and restarted.
  ASSERT_EQ(kill(static_cast<pid_t>(a->pid()), SIGKILL), 0);
  ASSERT_TRUE(Eventually([&] { return !rec2.events("BackOff").empty(); }));
  ASSERT_TRUE(WaitReady(a->id(), 1));
  EXPECT_NE(Find(a->id())->pid(), a->pid());
  EXPECT_TRUE(Eventually([&] {
    return ReadFile(absl::StrCat("/proc/", a->pid(), "/stat")).empty();
  })) << "adopted process left as a zombie";
  // New instances never get an adopted instance's port.
  auto c = rt_->Start(SampleApp());
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->port(), a->port());
  EXPECT_NE(c->port(), b->port());
  // Stopping an adopted instance works too.
  ASSERT_TRUE(rt_->Stop(b->id(), absl::Seconds(5)).ok());
  ASSERT_TRUE(Eventually([&] { return rec2.Removed(b->id()); }));
  EXPECT_TRUE(Eventually([&] {
    return ReadFile(absl::StrCat("/proc/", b->pid(), "/stat")).empty();
  }));
}

TEST_F(ProcessRuntimeTest, ShutdownStopsInstances) {
  auto a = rt_->Start(SampleApp());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(WaitReady(a->id()));
  rt_->Shutdown(true);
  EXPECT_TRUE(ReadFile(absl::StrCat("/proc/", a->pid(), "/stat")).empty());
  EXPECT_EQ(rt_->Start(SampleApp()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ProcessRuntimeTest, RecordWrittenForEveryInstance) {
  // A record is on disk before the process runs: every live instance has one.
  auto a = rt_->Start(SampleApp());
  ASSERT_TRUE(a.ok());
  runtime::InstanceRecord rec;
  std::ifstream in(absl::StrCat(dir_.path(), "/instances/", a->id(), ".pb"),
                   std::ios::binary);
  ASSERT_TRUE(rec.ParseFromIstream(&in));
  EXPECT_EQ(rec.pid(), a->pid());
  EXPECT_GT(rec.start_ticks(), 0u);
  EXPECT_FALSE(rec.boot_id().empty());
  EXPECT_EQ(rec.port(), a->port());
  EXPECT_EQ(rec.template_().command(0), "tidal-sample-app");
}

// Issue 16: the log of an instance that has stopped stays for `logs
// --previous` (StoppedInstances lists it; running ones are not listed), and
// goes once nothing wrote to it for stopped_log_retention, with its rotated
// file (logs an earlier tidald left too).
TEST_F(ProcessRuntimeTest, StoppedLogsAreKeptForTheirRetention) {
  rt_->Shutdown(true);
  rt_.reset();
  const std::string logs = absl::StrCat(dir_.path(), "/logs");
  std::filesystem::create_directories(logs);
  const std::string old_log = logs + "/default_web_web-old01.log";
  const std::string new_log = logs + "/default_web_web-new01.log";
  for (const auto& p : {old_log, old_log + ".1", new_log}) {
    FILE* f = fopen(p.c_str(), "w");
    ASSERT_NE(f, nullptr) << p;
    fputs("bye\n", f);
    fclose(f);
  }
  const auto two_hours_ago =
      std::filesystem::file_time_type::clock::now() - std::chrono::hours(2);
  std::filesystem::last_write_time(old_log, two_hours_ago);
  std::filesystem::last_write_time(old_log + ".1", two_hours_ago);
  ProcessRuntimeOptions o = Options();
  o.stopped_log_retention = absl::Minutes(30);
  rt_ = std::make_unique<ProcessRuntime>(o);
  rt_->SetListener(rec_.listener());
  EXPECT_TRUE(Eventually([&] { return !std::filesystem::exists(old_log); }));
  EXPECT_FALSE(std::filesystem::exists(old_log + ".1"));
  EXPECT_TRUE(std::filesystem::exists(new_log));
  EXPECT_EQ(rt_->StoppedInstances("default", "web"),
            (std::vector<StoppedInstance>{{"web-new01", "default", "web"}}));

  auto inst = rt_->Start(Shell("echo crashed; exec sleep 60"));
  ASSERT_TRUE(inst.ok()) << inst.status();
  ASSERT_TRUE(Eventually([&] {
    return absl::StrContains(ReadFile(inst->log_path()), "crashed");
  }));
  EXPECT_TRUE(rt_->StoppedInstances("default", "sh").empty());
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::ZeroDuration()).ok());
  ASSERT_TRUE(rt_->WaitForNoInstances(absl::Seconds(10)));
  EXPECT_EQ(rt_->StoppedInstances("default", "sh"),
            (std::vector<StoppedInstance>{{inst->id(), "default", "sh"}}));
  // Of every app (what a node publishes in HA mode): names from the files
  // (in any order: both may have been written in the same second).
  std::vector<std::string> all;
  for (const StoppedInstance& s : rt_->StoppedInstances()) {
    all.push_back(absl::StrCat(s.namespace_, "/", s.app, "/", s.id));
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (std::vector<std::string>{"default/sh/" + inst->id(),
                                           "default/web/web-new01"}));
  EXPECT_TRUE(absl::StrContains(ReadLogs(*rt_, inst->id()), "crashed"));
}

}  // namespace
// The usage of `id` from Usage(), if it is there.
std::optional<InstanceUsage> UsageOf(Runtime* rt, const std::string& id) {
  for (const InstanceUsage& u : rt->Usage("default", "")) {
    if (u.instance_id == id) return u;
  }
  return std::nullopt;
}

TEST_F(ProcessRuntimeTest, UsageOfBusyProcessGrows) {
  auto inst = rt_->Start(Shell("while :; do :; done"));
  ASSERT_TRUE(inst.ok());
  std::optional<InstanceUsage> first;
  // Right after the fork (before exec) the RSS can read 0; the shell soon
  // has resident pages.
  ASSERT_TRUE(Eventually([&] {
    first = UsageOf(rt_.get(), inst->id());
    return first.has_value() && first->memory_bytes > 0;
  }));
  // Busy for real: CPU seconds grow (the machine is shared, so allow time).
  std::optional<InstanceUsage> later;
  ASSERT_TRUE(Eventually(
      [&] {
        later = UsageOf(rt_.get(), inst->id());
        return later && later->cpu_seconds >= first->cpu_seconds + 0.3;
      },
      absl::Seconds(30)))
      << "cpu seconds stayed at " << (later ? later->cpu_seconds : -1);
  EXPECT_GT(later->sampled_at, first->sampled_at);
  EXPECT_GT(later->memory_bytes, 0);
  // Filtered by app.
  EXPECT_TRUE(rt_->Usage("default", "other").empty());
  EXPECT_EQ(rt_->Usage("default", "sh").size(), 1u);
  // Gone once stopped.
  ASSERT_TRUE(rt_->Stop(inst->id(), absl::Seconds(1)).ok());
  ASSERT_TRUE(Eventually([&] { return rec_.Removed(inst->id()); }));
  EXPECT_FALSE(UsageOf(rt_.get(), inst->id()).has_value());
}

TEST_F(ProcessRuntimeTest, UsageCountsTheWholeProcessGroup) {
  // The shell itself only waits; a child shell burns the CPU.
  auto inst = rt_->Start(Shell("/bin/sh -c 'while :; do :; done' & wait"));
  ASSERT_TRUE(inst.ok());
  std::optional<InstanceUsage> first;
  ASSERT_TRUE(Eventually([&] {
    first = UsageOf(rt_.get(), inst->id());
    return first.has_value();
  }));
  std::optional<InstanceUsage> later;
  ASSERT_TRUE(Eventually(
      [&] {
        later = UsageOf(rt_.get(), inst->id());
        return later && later->cpu_seconds >= first->cpu_seconds + 0.3;
      },
      absl::Seconds(30)))
      << "cpu seconds stayed at " << (later ? later->cpu_seconds : -1);
  // Two processes' resident memory, each more than zero.
  EXPECT_GT(later->memory_bytes, 0);
}

}  // namespace tidal
