// End-to-end tests of the core (issue 2): real tidald, real tidalctl, real
// sample-app processes.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "e2e/daemon_test.h"
#include "e2e/e2e_util.h"
#include "e2e/http_client.h"

namespace tidal::e2e {
namespace {

// An app spec whose processes carry a unique marker in their command line,
// so tests can count them in /proc.
std::string AppYaml(const std::string& name, int replicas,
                    const std::string& marker, const std::string& version,
                    const std::string& extra_args = "") {
  return absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: )",
                      name, R"(
spec:
  replicas: )",
                      replicas, R"(
  template:
    command: [")",
                      BuildDir(), R"(/examples/tidal-sample-app"]
    args: ["--version", ")",
                      version, "-", marker, "\"", extra_args, R"(]
    readinessProbe:
      httpGet: {path: /healthz}
      periodSeconds: 1
    terminationGracePeriodSeconds: 5
)");
}

class CoreE2ETest : public DaemonTest {};

TEST_F(CoreE2ETest, ScaleReplaceCrashAndDelete) {
  auto r = Apply(AppYaml("hello", 3, marker_, "v1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "created")) << r.out;
  ASSERT_TRUE(Eventually([&] { return Ready("hello") == 3; }))
      << daemon_->Ctl({"describe", "app", "hello"}).out;
  EXPECT_EQ(Count(), 3);

  // The gateway serves the app by Host, and the admin port exposes
  // Prometheus metrics for tidald and the gateway.
  auto hello = HttpGet(daemon_->gateway_port(), AppHost("hello"), "/");
  EXPECT_EQ(hello.status, 200) << hello.error;
  EXPECT_TRUE(absl::StrContains(hello.body, "hello from v1-" + marker_))
      << hello.body;
  auto ready = HttpGet(daemon_->admin_port(), "127.0.0.1", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.error << ready.body;
  auto metrics = HttpGet(daemon_->admin_port(), "127.0.0.1", "/metrics");
  ASSERT_EQ(metrics.status, 200) << metrics.error;
  EXPECT_TRUE(absl::StrContains(metrics.body, "tidal_apps 1\n"))
      << metrics.body;
  EXPECT_TRUE(absl::StrContains(metrics.body, "tidal_instances 3\n"))
      << metrics.body;
  EXPECT_TRUE(absl::StrContains(metrics.body, "process_resident_memory_bytes "))
      << metrics.body;
  EXPECT_TRUE(absl::StrContains(
      metrics.body,
      "tidal_gateway_requests_total{namespace=\"default\",app=\"hello\""))
      << metrics.body;

  // 3 -> 5
  r = Apply(AppYaml("hello", 5, marker_, "v1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] { return Ready("hello") == 5 && Count() == 5; }));

  // Kill one instance: it is replaced, and an event says why.
  auto pids = FindProcesses(marker_);
  ASSERT_EQ(pids.size(), 5u);
  kill(pids[0], SIGKILL);
  ASSERT_TRUE(Eventually([&] {
    auto now = FindProcesses(marker_);
    return now.size() == 5 &&
           std::find(now.begin(), now.end(), pids[0]) == now.end() &&
           Ready("hello") == 5;
  }));
  // Events are written in batches off the reconcile path.
  CommandResult events;
  EXPECT_TRUE(Eventually(
      [&] {
        events = daemon_->Ctl({"get", "events", "hello"});
        return events.exit_code == 0 &&
               (absl::StrContains(events.out, "signal 9") ||
                absl::StrContains(events.out, "killed"));
      },
      absl::Seconds(10)))
      << events.out << events.err;

  // New template: every instance replaced.
  r = Apply(AppYaml("hello", 5, marker_, "v2"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually(
      [&] {
        return FindProcesses("--version v2-" + marker_).size() == 5 &&
               FindProcesses("--version v1-" + marker_).empty() &&
               Ready("hello") == 5;
      },
      absl::Seconds(40)))
      << daemon_->Ctl({"describe", "app", "hello"}).out;

  // Delete: no process left, and the app is gone.
  r = daemon_->Ctl({"delete", "app", "hello"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] { return Count() == 0; }));
  ASSERT_TRUE(Eventually([&] {
    return daemon_->Ctl({"get", "app", "hello"}).exit_code != 0;
  }));
}

TEST_F(CoreE2ETest, Kill9WhileRunningAndWhileReconciling) {
  // Instances take 1 s to become ready, so the second kill lands while new
  // instances are still starting.
  const std::string slow = R"(, "--startup-delay", "1s")";
  ASSERT_EQ(Apply(AppYaml("steady", 3, marker_, "v1", slow)).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return Ready("steady") == 3; }));
  auto before = FindProcesses(marker_);
  ASSERT_EQ(before.size(), 3u);

  // kill -9 tidald while the instances run: they keep running and are adopted.
  daemon_->Kill9();
  EXPECT_EQ(Count(), 3);
  ASSERT_TRUE(daemon_->Start());
  ASSERT_TRUE(Eventually([&] { return Ready("steady") == 3; }));
  auto after = FindProcesses(marker_);
  std::sort(before.begin(), before.end());
  std::sort(after.begin(), after.end());
  EXPECT_EQ(before, after) << "instances were not adopted";

  // kill -9 while an apply is being reconciled (scale 3 -> 8): some new
  // instances have been started and none of them is ready yet.
  ASSERT_EQ(Apply(AppYaml("steady", 8, marker_, "v1", slow)).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return Count() > 3; }, absl::Seconds(10)));
  daemon_->Kill9();
  const int at_kill = Count();
  EXPECT_GT(at_kill, 3);
  std::cout << "[ figures  ] killed tidald with " << at_kill
            << " of 8 processes started\n";
  ASSERT_TRUE(daemon_->Start());
  auto spec = daemon_->Ctl({"get", "app", "steady", "-o", "yaml"});
  ASSERT_EQ(spec.exit_code, 0) << spec.err;
  EXPECT_TRUE(absl::StrContains(spec.out, "replicas: 8")) << spec.out;
  ASSERT_TRUE(Eventually([&] { return Ready("steady") == 8; }));
  // Exactly the desired number, now and a moment later (no late duplicates).
  EXPECT_EQ(Count(), 8);
  for (int i = 0; i < 20; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_EQ(Count(), 8);
  }
}

TEST_F(CoreE2ETest, SigtermLeavesInstancesForTheNextStartOrStopsThem) {
  ASSERT_EQ(Apply(AppYaml("kept", 2, marker_, "v1")).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return Ready("kept") == 2; }));
  auto before = FindProcesses(marker_);
  ASSERT_EQ(before.size(), 2u);

  // SIGTERM: tidald exits and leaves the instances running.
  ASSERT_TRUE(daemon_->Stop());
  EXPECT_EQ(Count(), 2);
  ASSERT_TRUE(daemon_->Start());
  ASSERT_TRUE(Eventually([&] { return Ready("kept") == 2; }));
  auto after = FindProcesses(marker_);
  std::sort(before.begin(), before.end());
  std::sort(after.begin(), after.end());
  EXPECT_EQ(before, after) << "the next start did not adopt the instances";

  // With --stop-instances-on-exit, SIGTERM stops every instance first.
  daemon_->Stop();
  daemon_ = std::make_unique<Daemon>(
      dir_.path(), std::vector<std::string>{"--stop-instances-on-exit"});
  ASSERT_TRUE(daemon_->Start());
  ASSERT_TRUE(Eventually([&] { return Ready("kept") == 2; }));
  EXPECT_EQ(Count(), 2);
  ASSERT_TRUE(daemon_->Stop());
  EXPECT_EQ(Count(), 0) << "instances outlived tidald --stop-instances-on-exit";
}

// An instance that ignores SIGTERM, with the longest grace period allowed:
// a plain delete would wait an hour and block the name; delete --force
// kills it at once and the name can be applied again. Specs beyond the
// limits are refused by tidald with file, line and field.
TEST_F(CoreE2ETest, ForceDeleteOfAnInstanceThatIgnoresSigterm) {
  const std::string spec = absl::StrCat(R"(apiVersion: tidal.dev/v1
kind: App
metadata:
  name: stubborn
spec:
  replicas: 1
  template:
    command: ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done; : )",
                                        marker_, R"("]
    terminationGracePeriodSeconds: 3600
)");
  auto r = Apply(spec);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] { return Count() == 1; })) << Count();

  r = daemon_->Ctl({"delete", "app", "stubborn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Being deleted (the instance has an hour to go): the name is taken.
  r = Apply(spec);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "is being deleted")) << r.err;
  EXPECT_EQ(Count(), 1) << "SIGTERM is ignored";

  const absl::Time start = absl::Now();
  r = daemon_->Ctl(
      {"delete", "app", "stubborn", "--force", "--wait", "--timeout", "30s"});
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "warning: immediate deletion")) << r.err;
  EXPECT_LT(took, absl::Seconds(15));
  std::cerr << "delete --force --wait of an instance ignoring SIGTERM took "
            << absl::FormatDuration(took) << "\n";
  EXPECT_TRUE(Eventually([&] { return Count() == 0; })) << Count();
  r = Apply(spec);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "created")) << r.out;
  ASSERT_TRUE(Eventually([&] { return Count() == 1; })) << Count();
  r = daemon_->Ctl({"delete", "app", "stubborn", "--grace-period=0", "--force",
                    "--wait", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Eventually([&] { return Count() == 0; })) << Count();

  // Beyond the limits: refused by tidald, naming file, line and field.
  std::string huge = absl::StrReplaceAll(
      spec, {{"replicas: 1", "replicas: 2147483647"},
             {"terminationGracePeriodSeconds: 3600",
              "terminationGracePeriodSeconds: 2147483647"}});
  r = Apply(huge);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_TRUE(absl::StrContains(
      r.err,
      "app.yaml:6:13: spec.replicas: 2147483647 exceeds the per-app maximum "
      "of 1000 instances (tidald --max-instances-per-app)"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.err,
      "app.yaml:9:36: spec.template.terminationGracePeriodSeconds: must be "
      "at most 3600, got 2147483647"))
      << r.err;
  EXPECT_EQ(Count(), 0);
}

}  // namespace
}  // namespace tidal::e2e
