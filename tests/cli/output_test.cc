#include "cli/output.h"

#include "absl/strings/match.h"
#include "cli/cli.h"
#include "cli/diff.h"
#include "common/proto_time.h"
#include "gtest/gtest.h"

namespace tidal::cli {
namespace {

TEST(FormatAgeTest, LikeKubectl) {
  EXPECT_EQ(FormatAge(absl::Seconds(0)), "0s");
  EXPECT_EQ(FormatAge(absl::Seconds(45)), "45s");
  EXPECT_EQ(FormatAge(absl::Seconds(119)), "119s");
  EXPECT_EQ(FormatAge(absl::Seconds(330)), "5m30s");
  EXPECT_EQ(FormatAge(absl::Minutes(5)), "5m");
  EXPECT_EQ(FormatAge(absl::Minutes(45)), "45m");
  EXPECT_EQ(FormatAge(absl::Minutes(330)), "5h30m");
  EXPECT_EQ(FormatAge(absl::Hours(30)), "30h");
  EXPECT_EQ(FormatAge(absl::Hours(77)), "3d5h");
  EXPECT_EQ(FormatAge(absl::Hours(24 * 20)), "20d");
  EXPECT_EQ(FormatAge(absl::Seconds(-5)), "0s");
}

TEST(TableTest, AlignsColumnsWithThreeSpaces) {
  Table t({"NAME", "READY", "AGE"});
  t.AddRow({"hello", "2/3", "5m"});
  t.AddRow({"a-much-longer-name", "10/10", "3d"});
  EXPECT_EQ(t.Render(),
            "NAME                 READY   AGE\n"
            "hello                2/3     5m\n"
            "a-much-longer-name   10/10   3d\n");
  EXPECT_EQ(t.Render(false).find("NAME"), std::string::npos);
}

TEST(AppRowTest, ReadyDesiredStatusAndWideColumns) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  v1::App app;
  app.mutable_metadata()->set_name("hello");
  app.mutable_metadata()->set_namespace_("team-a");
  *app.mutable_metadata()->mutable_creation_timestamp() =
      ToProtoTime(now - absl::Minutes(5));
  app.mutable_spec()->set_replicas(3);
  TableOptions o;
  EXPECT_EQ(
      AppRow(app, o, now),
      (std::vector<std::string>{"hello", "0/3", "3", "Pending", "-", "5m"}));
  app.mutable_status()->set_observed_generation(1);
  app.mutable_status()->set_desired_replicas(3);
  app.mutable_status()->set_ready_replicas(2);
  auto* c = app.mutable_status()->add_conditions();
  c->set_type("Ready");
  c->set_status("False");
  c->set_reason("MinimumReplicasUnavailable");
  EXPECT_EQ(AppRow(app, o, now)[1], "2/3");
  EXPECT_EQ(AppStatusWord(app), "MinimumReplicasUnavailable");
  c->set_status("True");
  EXPECT_EQ(AppStatusWord(app), "Ready");
  // All ready, but the release rolled back: the spec does not run.
  auto* p = app.mutable_status()->add_conditions();
  p->set_type("Progressing");
  p->set_status("False");
  p->set_reason("RolledBack");
  EXPECT_EQ(AppStatusWord(app), "RolledBack");
  p->set_reason("RolloutFailed");
  EXPECT_EQ(AppStatusWord(app), "RolloutFailed");
  p->set_status("True");
  p->set_reason("Complete");
  EXPECT_EQ(AppStatusWord(app), "Ready");
  *app.mutable_metadata()->mutable_deletion_timestamp() = ToProtoTime(now);
  EXPECT_EQ(AppStatusWord(app), "Terminating");

  o.wide = true;
  o.show_namespace = true;
  app.mutable_status()->set_url("http://hello.team-a.tidal.local");
  app.mutable_status()->set_template_hash("abc123");
  app.mutable_status()->mutable_rollout()->set_stable_revision(4);
  app.mutable_status()->mutable_scaling()->set_metric("concurrency");
  app.mutable_status()->mutable_scaling()->set_value(12.5);
  app.mutable_status()->mutable_scaling()->set_target(10);
  EXPECT_EQ(AppColumns(o),
            (std::vector<std::string>{"NAMESPACE", "NAME", "READY", "DESIRED",
                                      "STATUS", "URL", "AGE", "REVISION",
                                      "TEMPLATE HASH", "METRIC"}));
  EXPECT_EQ(
      AppRow(app, o, now),
      (std::vector<std::string>{"team-a", "hello", "2/3", "3", "Terminating",
                                "http://hello.team-a.tidal.local", "5m", "4",
                                "abc123", "concurrency 12.5/10"}));
}

TEST(DescribeTest, ShowsSpecStatusInstancesAndEvents) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  v1::App app;
  app.mutable_metadata()->set_name("hello");
  app.mutable_metadata()->set_namespace_("default");
  (*app.mutable_metadata()->mutable_labels())["team"] = "core";
  app.mutable_spec()->mutable_scaling()->set_min_replicas(1);
  app.mutable_spec()->mutable_scaling()->set_max_replicas(5);
  app.mutable_spec()->mutable_template_()->add_command("./server");
  app.mutable_spec()
      ->mutable_template_()
      ->mutable_readiness_probe()
      ->mutable_http_get()
      ->set_path("/healthz");
  app.mutable_spec()->mutable_template_()->set_protocol("grpc");
  app.mutable_spec()->mutable_template_()->set_idle_timeout_seconds(120);
  auto* cond = app.mutable_status()->add_conditions();
  cond->set_type("Ready");
  cond->set_status("True");
  v1::Instance inst;
  inst.set_id("hello-1");
  inst.set_app("hello");
  inst.set_phase("Running");
  inst.set_ready(true);
  v1::Event ev;
  ev.set_type("Normal");
  ev.set_reason("Started");
  ev.set_message("Started instance hello-1");
  *ev.mutable_last_time() = ToProtoTime(now - absl::Seconds(30));
  std::string d = DescribeApp(app, {inst}, {ev}, now);
  for (const char* want :
       {"Name:           hello", "Labels:         team=core",
        "1..5 (autoscaled)", "Command:      ./server",
        "Readiness:    http-get /healthz", "Protocol:     grpc",
        "Timeouts:     total none, response start default, "
        "idle 120s",
        "Ready   True", "hello-1", "30s   Normal   Started"}) {
    EXPECT_TRUE(absl::StrContains(d, want)) << want << "\n" << d;
  }
}

// A release under way shows where from and where to; a settled one only
// the revision that runs (not "revision 1 -> 0, step 0/0").
TEST(DescribeTest, RolloutStatusShowsAStepOnlyDuringARelease) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  v1::App app;
  app.mutable_metadata()->set_name("hello");
  auto* ro = app.mutable_status()->mutable_rollout();
  ro->set_phase("Succeeded");
  ro->set_stable_revision(1);
  EXPECT_TRUE(absl::StrContains(DescribeApp(app, {}, {}, now),
                                "Rollout status: Succeeded (revision 1)\n"))
      << DescribeApp(app, {}, {}, now);
  ro->set_phase("Progressing");
  ro->set_update_revision(2);
  ro->set_step(1);
  ro->set_total_steps(4);
  ro->set_weight(25);
  EXPECT_TRUE(absl::StrContains(
      DescribeApp(app, {}, {}, now),
      "Rollout status: Progressing (revision 1 -> 2, step 1/4, weight 25%)"))
      << DescribeApp(app, {}, {}, now);
}

// Issue 16: the target the spec writes and the utilization the scaler aims
// at are shown apart (a target of 10 at 70% is not "/7").
TEST(AppRowTest, MetricShowsTheSpecTargetAndTheUtilization) {
  v1::App app;
  app.mutable_metadata()->set_name("hello");
  auto* sc = app.mutable_status()->mutable_scaling();
  sc->set_metric("concurrency");
  sc->set_value(12.5);
  sc->set_target(10);
  sc->set_target_utilization(70);
  TableOptions o;
  o.wide = true;
  const auto row = AppRow(app, o, absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(row.back(), "concurrency 12.5/10 (utilization 70%)");
  EXPECT_TRUE(absl::StrContains(
      DescribeApp(app, {}, {}, absl::FromUnixSeconds(1700000000)),
      "against a target of 10 per instance, scaling at 70% of it (7)"));
  sc->set_target_utilization(100);
  EXPECT_EQ(AppRow(app, o, absl::FromUnixSeconds(1700000000)).back(),
            "concurrency 12.5/10");
}

// Issue 16: progress lines never say "revision 0 Pending: 0/0 ready" (the
// status of no generation yet) nor "2/1 ready" (old instances stopping).
TEST(ProgressLineTest, OneTruthAboutWhatRuns) {
  v1::App app;
  app.mutable_metadata()->set_name("hello");
  app.mutable_metadata()->set_generation(1);
  EXPECT_EQ(ProgressLine(app),
            "hello: generation 1 waiting for the controller");
  auto* st = app.mutable_status();
  st->set_observed_generation(1);
  st->set_desired_replicas(1);
  st->set_ready_replicas(2);
  st->mutable_rollout()->set_phase("Succeeded");
  st->mutable_rollout()->set_stable_revision(2);
  EXPECT_EQ(ProgressLine(app),
            "hello: revision 2 Succeeded: 1/1 ready, 1 stopping");
  app.mutable_metadata()->set_generation(2);  // applied, not yet seen
  EXPECT_EQ(ProgressLine(app),
            "hello: generation 2 waiting for the controller");
  st->set_observed_generation(2);
  auto* r = st->mutable_rollout();
  r->set_phase("Progressing");
  r->set_update_revision(3);
  r->set_step(1);
  r->set_total_steps(1);
  r->set_update_ready(1);
  r->set_update_target(3);
  r->set_stable_ready(3);
  r->set_stable_target(0);
  r->set_weight(100);
  EXPECT_EQ(ProgressLine(app),
            "hello: revision 3 Progressing step 1/1: new 1/3 ready, revision 2 "
            "0/0 ready, 3 stopping, 100% traffic");
}

TEST(DescribeTest, ShowsTheScalerStatus) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  v1::App app;
  app.mutable_metadata()->set_name("hello");
  app.mutable_spec()->mutable_scaling()->set_max_replicas(0);
  auto* sc = app.mutable_status()->mutable_scaling();
  sc->set_metric("concurrency");
  sc->set_value(95);
  sc->set_target(7);
  sc->set_panic(true);
  sc->set_min_replicas(20);
  sc->set_max_replicas(0);
  sc->add_active_schedules("evening");
  sc->set_last_reason("concurrency 95 over target 7 per instance: 10 → 14");
  *sc->mutable_last_scale_time() = ToProtoTime(now - absl::Seconds(12));
  std::string d = DescribeApp(app, {}, {}, now);
  for (const char* want :
       {"0..unbounded (autoscaled)",
        "Scaling:        concurrency 95 in total against a target of 7 per "
        "instance (panic mode)",
        "Bounds:         20..unbounded (after schedules and prediction)",
        "Schedules:      evening (active)",
        "Last scale:     12s ago: concurrency 95 over target 7 per instance: "
        "10 → 14"}) {
    EXPECT_TRUE(absl::StrContains(d, want)) << want << "\n" << d;
  }
}

TEST(UnifiedDiffTest, HunksWithContext) {
  EXPECT_EQ(UnifiedDiff("a\nb\n", "a\nb\n", "x", "y"), "");
  EXPECT_EQ(UnifiedDiff("a\nb\nc\n", "a\nB\nc\n", "live", "desired"),
            "--- live\n+++ desired\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
  EXPECT_EQ(UnifiedDiff("", "a\nb\n", "live", "desired"),
            "--- live\n+++ desired\n@@ -0,0 +1,2 @@\n+a\n+b\n");
  std::string a, b;
  for (int i = 0; i < 20; ++i) {
    a += std::to_string(i) + "\n";
    b += (i == 2 || i == 17 ? "x" : std::to_string(i)) + "\n";
  }
  std::string d = UnifiedDiff(a, b, "a", "b");
  EXPECT_TRUE(absl::StrContains(d, "@@ -1,6 +1,6 @@")) << d;
  EXPECT_TRUE(absl::StrContains(d, "@@ -15,6 +15,6 @@")) << d;
}

}  // namespace
}  // namespace tidal::cli
