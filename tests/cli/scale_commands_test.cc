// `tidalctl scale`, `top apps` and `simulate`: the real binary against a
// TidalService (MemoryStore, fake runtime, fake request metrics) served on
// 127.0.0.1:0 in this process, as in tidalctl_test.cc.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "api/service.h"
#include "cli/tidalctl_fixture.h"
#include "fakes/fake_clock.h"
#include "fakes/fake_metrics.h"
#include "fakes/fake_runtime.h"
#include "fakes/memory_store.h"
#include "gtest/gtest.h"
#include "scaler/load_history.h"
#include "store/keys.h"

namespace tidal {
namespace {

namespace fs = std::filesystem;

using cli_test::ReadAll;
using cli_test::Result;

class ScaleCommandsTest : public cli_test::TidalctlFixture {
 protected:
  void Configure(ServiceOptions* opts) override {
    // Fixed figures for "hello", none for other apps.
    RequestStats s;
    s.requests = 1200;
    s.responses_2xx = 1190;
    s.responses_5xx = 10;
    s.rps = 20;
    s.concurrency = 3.5;
    s.p50_ms = 4.2;
    s.p90_ms = 12;
    s.p99_ms = 1500;
    metrics_.SetAppStats("hello", 0, s);
    opts->metrics = &metrics_;
    // Ten minutes of history: "hello" at 10 requests/s, then 40 from one
    // to two replicas; "idle" at none.
    for (int64_t t = 0; t < 600; ++t) {
      LoadPoint p;
      p.rps = t < 300 ? 10 : 40;
      p.concurrency = p.rps / 10;
      p.p99_ms = 12;
      p.desired = p.ready = t < 300 ? 1 : 2;
      history_.Record("default", "hello", 1700000000 + t, p,
                      "rps 40 over target 30");
      history_.Record("default", "idle", 1700000000 + t, LoadPoint(), "");
    }
    opts->history = &history_;
  }

  static std::string AppYaml(const std::string& name, const std::string& spec) {
    return absl::StrCat(
        "apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n  name: ", name,
        "\nspec:\n", spec,
        "  template:\n    command: [\"/bin/sleep\", \"1000\"]\n");
  }

  testing::FakeMetrics metrics_;
  LoadHistory history_;
};

TEST_F(ScaleCommandsTest, ScaleSetsReplicasOrBounds) {
  Result r = Run({"apply", "-f",
                  WriteFile("a.yaml", AppYaml("hello", "  replicas: 2\n"))});
  ASSERT_EQ(r.code, 0) << r.err;

  r = Run({"scale", "hello", "--replicas", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "app.tidal.dev/hello scaled\n");
  r = Run({"get", "app", "hello", "-o", "yaml"});
  EXPECT_TRUE(absl::StrContains(r.out, "replicas: 5")) << r.out;

  // Bounds turn autoscaling on: the fixed count goes.
  r = Run({"scale", "hello", "--min", "0", "--max", "7"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = Run({"get", "app", "hello", "-o", "yaml"});
  EXPECT_TRUE(absl::StrContains(r.out, "minReplicas: 0")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "maxReplicas: 7")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "\n  replicas:")) << r.out;

  r = Run({"scale", "hello", "--min", "9"});
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "maxReplicas")) << r.err;

  r = Run({"scale", "hello"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "error: scale needs --replicas, --min or --max\n");
  r = Run({"scale", "nope", "--replicas", "1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "not found")) << r.err;
  // Issue 16: a negative count says what is wanted, not a double range.
  r = Run({"scale", "hello", "--replicas", "-1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StartsWith(
      r.err, "--replicas: must be a whole number >= 0, got -1\n"))
      << r.err;
}

TEST_F(ScaleCommandsTest, TopAppsShowsRequestMetrics) {
  ASSERT_EQ(Run({"apply", "-f",
                 WriteFile("a.yaml", AppYaml("hello", "  replicas: 2\n"))})
                .code,
            0);
  ASSERT_EQ(Run({"apply", "-f",
                 WriteFile("b.yaml", AppYaml("idle", "  replicas: 1\n"))})
                .code,
            0);
  Result r = Run({"top", "apps"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "NAME    READY   RPS   CONCURRENCY   P50      P90    P99     2XX "
            "   3XX   4XX   5XX   RPS(10M)\n"
            "hello   0/0     20    3.5           4.20ms   12ms   1.50s   1190 "
            "  0     0     10    \u2583\u2583\u2583\u2583\u2583\u2588\u2588"
            "\u2588\u2588\u2588\n"
            "idle    0/0     0     0             -        -      -       0    "
            "  0     0     0     \u2581\u2581\u2581\u2581\u2581\u2581\u2581"
            "\u2581\u2581\u2581\n");
  // describe: the last hour's load from the same history.
  r = Run({"describe", "app", "hello"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "Load (last hour):\n")) << r.out;
  EXPECT_TRUE(
      absl::StrContains(r.out, "Requests/s:   now 40, mean 25, peak 40"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "Replicas:     desired 1-2, ready 1-2"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "  1 -> 2  rps 40 over target 30\n"))
      << r.out;
  r = Run({"top", "apps", "hello", "-A"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "NAMESPACE   NAME    READY")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "default     hello")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "idle")) << r.out;

  r = Run({"top", "apps", "nope"});
  EXPECT_EQ(r.code, 1);
  r = Run({"top", "instances"});
  EXPECT_EQ(r.code, 2);
  r = Run({"top", "apps", "--window", "soon"});
  EXPECT_EQ(r.code, 2);
}

TEST_F(ScaleCommandsTest, SimulateReplaysATrace) {
  std::string spec = WriteFile(
      "s.yaml", AppYaml("sim",
                        "  scaling:\n    minReplicas: 0\n    target: 1\n"
                        "    targetUtilization: 100\n"));
  // arrival_s,service_ms: 200 requests over 100 s, then silence.
  std::string trace = "arrival_s,service_ms\n";
  for (int i = 0; i < 200; ++i) absl::StrAppend(&trace, i * 0.5, ",100\n");
  absl::StrAppend(&trace, "400,100\n");
  std::string trace_path = WriteFile("trace.csv", trace);
  std::string plot = (dir_ / "plot.svg").string();
  Result r = Run({"simulate", "-f", spec, "--trace", trace_path, "--plot", plot,
                  "--start-delay", "500ms"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "201 requests")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "algorithm tidal")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "start delay 500ms")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "cold starts")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "plot written to")) << r.out;
  EXPECT_TRUE(absl::StartsWith(ReadAll(plot), "<svg")) << ReadAll(plot);

  r = Run(
      {"simulate", "-f", spec, "--trace", trace_path, "--algorithm", "kpa"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "algorithm kpa")) << r.out;

  // Issue 13: --compare prints every policy on this spec; with --algorithm
  // it is a usage error.
  r = Run({"simulate", "-f", spec, "--trace", trace_path, "--compare"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* p :
       {"* tidal (default)", "  kpa (Knative KPA)", "  hpa (Kubernetes HPA)",
        "  keepalive (fixed", "  hybrid (hybrid histogram)"}) {
    EXPECT_TRUE(absl::StrContains(r.out, p)) << p << "\n" << r.out;
  }
  r = Run({"simulate", "-f", spec, "--trace", trace_path, "--compare",
           "--algorithm", "kpa"});
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "cannot be combined")) << r.err;

  // Issue 16: the spec's target as written, the utilization apart (not
  // "target 0.7" for target 1 at 70%); a headerless trace is taken.
  std::string at70 =
      WriteFile("s70.yaml", AppYaml("sim",
                                    "  scaling:\n    minReplicas: 0\n"
                                    "    target: 1\n"));
  std::string bare = WriteFile("bare.csv", "0.5,100\n1.5,100\n");
  r = Run({"simulate", "-f", at70, "--trace", bare});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, "target 1 per instance (scaling at 70% of it: 0.7)"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "2 requests")) << r.out;

  r = Run({"simulate", "-f", (dir_ / "missing.yaml").string(), "--trace",
           trace_path});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "missing.yaml")) << r.err;
  r = Run(
      {"simulate", "-f", spec, "--trace", trace_path, "--start-delay", "x"});
  EXPECT_EQ(r.code, 2);
}

TEST_F(ScaleCommandsTest, SimulateValidatesTheSpecAsApplyDoes) {
  std::string trace_path =
      WriteFile("trace.csv", "arrival_s,service_ms\n10,100\n");
  // Line 8: initialScale over maxReplicas; line 13: an unknown schedule field.
  std::string spec =
      WriteFile("bad.yaml", AppYaml("bad",
                                    "  scaling:\n    maxReplicas: 3\n"
                                    "    initialScale: 5\n"
                                    "    schedules:\n"
                                    "      - cron: \"0 19 * * *\"\n"
                                    "        duration: 4h\n"
                                    "        minReplicas: 2\n"
                                    "        timezone: UTC\n"));
  Result r = Run({"simulate", "-f", spec, "--trace", trace_path});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(absl::StrContains(
      r.err, spec + ":8:19: spec.scaling.initialScale: must be <= maxReplicas "
                    "(5 > 3)\n"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.err, spec + ":13:9: spec.scaling.schedules[0].timezone: unknown field"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.err, "error: 2 problems in the spec; nothing was simulated"))
      << r.err;
  // The same lines as apply's.
  Result a = Run({"apply", "--dry-run=client", "-f", spec});
  EXPECT_EQ(a.code, 2);
  auto lines = [](const std::string& err) {
    return err.substr(0, err.find("error: "));
  };
  EXPECT_EQ(lines(r.err), lines(a.err)) << a.err;
  EXPECT_FALSE(lines(r.err).empty());

  // Several apps: --app picks one; without it the command asks.
  std::string two = WriteFile(
      "two.yaml",
      absl::StrCat(AppYaml("one", "  scaling:\n    algorithm: kpa\n"), "---\n",
                   AppYaml("two", "  scaling:\n    algorithm: hpa\n")));
  r = Run({"simulate", "-f", two, "--trace", trace_path});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "--app")) << r.err;
  r = Run({"simulate", "-f", two, "--trace", trace_path, "--app", "two"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "app two: algorithm hpa")) << r.out;
  r = Run({"simulate", "-f", two, "--trace", trace_path, "--app", "three"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "no app named \"three\"")) << r.err;
}

}  // namespace
}  // namespace tidal
