// Instance isolation end to end (docs/runtime.md, "Limits and isolation"):
// tidald as root runs each namespace's instances as a user of its own by
// default, and a memory hog with resources.memory 64Mi is killed and shown
// OOMKilled by tidalctl.

#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "e2e/daemon_test.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"
#include "gtest/gtest.h"

namespace tidal::e2e {
namespace {

constexpr char kPython[] = "/usr/bin/python3";

std::string ReadAll(const std::string& path) {
  auto r = Run({"/bin/cat", path});
  return r.out;
}

class IsolationE2ETest : public DaemonTest {
 protected:
  // The "instance limits: ..." line of tidald's start-up log.
  std::string LimitsLine() {
    for (absl::string_view line :
         absl::StrSplit(ReadAll(daemon_->log_path()), '\n')) {
      if (absl::StrContains(line, "instance limits:")) return std::string(line);
    }
    return "";
  }
};

// tidald as root, no --instance-user: each namespace's instances run as a
// uid of their own (not root, not nobody), served through the gateway on
// their port; an instance of another namespace can neither read their
// environment nor signal them, nor read tidald's data directory.
TEST_F(IsolationE2ETest, EachNamespaceRunsAsAUserOfItsOwnByDefault) {
  if (geteuid() != 0) GTEST_SKIP() << "tidald must run as root to switch";
  std::cout << "mechanism exercised: a uid per namespace (tidald's default)\n";
  auto r = Apply(absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: who
spec:
  replicas: 1
  template:
    command: [")",
                              BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", ")",
                              marker_, R"("]
    env: {API_KEY: key-of-default}
    readinessProbe:
      httpGet: {path: /healthz}
)"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<pid_t> pids;
  ASSERT_TRUE(Eventually([&] {
    pids = FindProcesses(marker_);
    return pids.size() == 1 && Ready("who") == 1;
  })) << daemon_->Ctl({"describe", "app", "who"}).out;
  auto uid_of = [](pid_t pid) {
    std::string uid;
    for (absl::string_view line : absl::StrSplit(
             ReadAll(absl::StrCat("/proc/", pid, "/status")), '\n')) {
      if (absl::ConsumePrefix(&line, "Uid:"))
        uid = std::string(absl::StripAsciiWhitespace(line));
    }
    return uid;
  };
  const std::string uid = uid_of(pids[0]);
  std::cout << "instance Uid: " << uid << "\n";
  EXPECT_TRUE(absl::StartsWith(uid, "18790481")) << uid;
  EXPECT_TRUE(absl::StrContains(ReadAll(daemon_->log_path()),
                                "instances run as a user per namespace"));
  auto hello = HttpGet(daemon_->gateway_port(), AppHost("who"), "/");
  EXPECT_EQ(hello.status, 200) << hello.error;
  EXPECT_TRUE(absl::StrContains(hello.body, "hello from " + marker_))
      << hello.body;

  // Another namespace tries the first one's secrets and tidald's files.
  const std::string probe = marker_ + "-probe";
  r = Apply(
      absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: nosy
  namespace: other
spec:
  replicas: 1
  template:
    command: ["/bin/sh", "-c", "cat /proc/)",
                   pids[0], R"(/environ || echo environ-denied; kill -0 )",
                   pids[0], R"( || echo kill-denied; ls )", daemon_->data_dir(),
                   R"( || echo datadir-denied; sleep 1000; : )", probe, R"("]
)"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CommandResult logs;
  ASSERT_TRUE(Eventually([&] {
    logs = daemon_->Ctl({"logs", "nosy", "-n", "other"});
    return absl::StrContains(logs.out, "datadir-denied");
  })) << logs.out
      << logs.err;
  EXPECT_TRUE(absl::StrContains(logs.out, "environ-denied")) << logs.out;
  EXPECT_TRUE(absl::StrContains(logs.out, "kill-denied")) << logs.out;
  EXPECT_FALSE(absl::StrContains(logs.out, "key-of-default")) << logs.out;
  std::vector<pid_t> nosy = FindProcesses(probe);
  ASSERT_EQ(nosy.size(), 1u);
  EXPECT_NE(uid_of(nosy[0]), uid);
}

// The bar: resources.memory 64Mi and a Python process allocating towards
// 512 MiB. With a cgroup memory controller (v2 or v1) it is killed and
// tidalctl shows OOMKilled (get instances -o wide, describe's last state and
// events); with only RLIMIT_AS the test says so and checks the failed
// allocation (MemoryError in tidalctl logs) instead.
TEST_F(IsolationE2ETest, MemoryHogIsShownOOMKilled) {
  if (access(kPython, X_OK) != 0) GTEST_SKIP() << kPython << " is missing";
  const std::string limits = LimitsLine();
  std::cout << "tidald: " << limits << "\n";
  ASSERT_FALSE(limits.empty());
  const bool cgroup = absl::StrContains(limits, "memory: cgroup");
  std::cout << "mechanism exercised: memory "
            << (cgroup
                    ? (absl::StrContains(limits, "memory: cgroup2") ? "cgroup2"
                                                                    : "cgroup1")
                    : "rlimit")
            << "\n";
  auto r = Apply(absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: hog
spec:
  replicas: 1
  template:
    command: ["python3", "-c", "import time\nchunks = []\nfor i in range(64):\n    chunks.append(b'x' * (8 << 20))\n    print('allocated', (i + 1) * 8, flush=True)\nprint('never stopped', flush=True)\ntime.sleep(1000)\n", ")",
                              marker_, R"("]
    resources: {memory: 64Mi}
)"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  if (cgroup) {
    CommandResult get;
    ASSERT_TRUE(Eventually(
        [&] {
          get = daemon_->Ctl({"get", "instances", "hog", "-o", "wide"});
          return absl::StrContains(get.out, "OOMKilled");
        },
        absl::Seconds(60)))
        << get.out << get.err;
    std::cout << get.out;
    EXPECT_TRUE(absl::StrContains(get.out, "CrashLoopBackOff")) << get.out;
    CommandResult describe;
    EXPECT_TRUE(Eventually([&] {
      describe = daemon_->Ctl({"describe", "app", "hog"});
      return absl::StrContains(describe.out, "Terminated, OOMKilled") &&
             absl::StrContains(describe.out, "was killed: out of memory");
    })) << describe.out;
    std::cout << describe.out;
    auto yaml = daemon_->Ctl({"get", "instances", "hog", "-o", "yaml"});
    EXPECT_TRUE(absl::StrContains(yaml.out, "reason: OOMKilled")) << yaml.out;
  } else {
    std::cout << "no writable cgroup memory controller: checking that the "
                 "allocation fails under RLIMIT_AS instead\n";
    CommandResult logs;
    ASSERT_TRUE(Eventually(
        [&] {
          auto get = daemon_->Ctl({"get", "instances", "hog", "-o", "json"});
          size_t at = get.out.find("\"id\": \"");
          if (at == std::string::npos) return false;
          at += 7;
          std::string id = get.out.substr(at, get.out.find('"', at) - at);
          logs = daemon_->Ctl({"logs", id});
          return absl::StrContains(logs.out, "MemoryError");
        },
        absl::Seconds(60)))
        << logs.out << logs.err;
  }
}

}  // namespace
}  // namespace tidal::e2e
