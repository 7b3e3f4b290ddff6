// `tidalctl simulate`: the spec goes through the API's parser (the same
// file:line:field errors as apply) and the scaler is built by the planner's
// rules.

#include "cli/simulate_command.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "api/spec.h"
#include "gtest/gtest.h"
#include "scaler/app_inputs.h"
#include "scaler/simulator.h"

namespace tidal::cli {
namespace {

using scaler::AppScaler;
using scaler::AppScalerInputs;
using scaler::AppScalerInputsFor;
using scaler::ResolveConfig;
using scaler::ScalerConfig;
using scaler::SimOptions;
using scaler::Simulate;
using scaler::Trace;

TEST(SimulatorTest, CommandPrintsFiguresAndPlot) {
  const std::string dir = ::testing::TempDir();
  const std::string spec = dir + "/app.yaml", trace = dir + "/trace.csv",
                    svg = dir + "/p.svg";
  std::ofstream(spec)
      << "apiVersion: tidal.dev/v1\nkind: App\nmetadata: {name: a}\n"
         "spec:\n  template: {command: [x], concurrency: 1}\n"
         "  scaling:\n    algorithm: kpa\n    scaleToZeroGracePeriod: 30s\n";
  std::ofstream(trace) << "arrival_s,service_ms\n10,1000\n200,1000\n";
  SimulateOptions so;
  so.spec_path = spec;
  so.trace_path = trace;
  so.plot_path = svg;
  std::ostringstream out;
  ASSERT_TRUE(RunSimulateCommand(so, out).ok()) << out.str();
  EXPECT_NE(out.str().find("cold starts       1"), std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("peak replicas 2"), std::string::npos) << out.str();
  std::ifstream f(svg);
  std::stringstream content;
  content << f.rdbuf();
  EXPECT_NE(content.str().find("<svg"), std::string::npos);
  EXPECT_NE(content.str().find("polyline"), std::string::npos);
  std::remove(spec.c_str());
  std::remove(trace.c_str());
  std::remove(svg.c_str());
  // A bad spec names the file, line and field.
  std::ofstream(spec) << "apiVersion: tidal.dev/v1\nkind: App\n"
                         "metadata: {name: a}\nspec:\n"
                         "  template: {command: [x]}\n"
                         "  scaling:\n    bogus: 1\n";
  so.plot_path.clear();
  absl::Status st = RunSimulateCommand(so, out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(
      st.message().find("app.yaml:7:5: spec.scaling.bogus: unknown field"),
      std::string::npos)
      << st;
  std::remove(spec.c_str());
}

// Writes `text` to a file in the test's temporary directory.
std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string AppDoc(const std::string& name, const std::string& scaling,
                   const std::string& tmpl = "  template: {command: [x]}\n") {
  return absl::StrCat("apiVersion: tidal.dev/v1\nkind: App\nmetadata:\n",
                      "  name: ", name, "\nspec:\n", tmpl, "  scaling:\n",
                      scaling);
}

// What `tidalctl apply` prints for the file: one line per error.
std::string ApplyErrors(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string out;
  for (const auto& e : spec::ParseApps(text.str(), path).errors)
    absl::StrAppend(&out, e.ToString(), "\n");
  return out;
}

// --compare: every policy on the user's spec and trace, each line the same
// figures a single run of that algorithm gives, the spec's own marked, and
// one plot line per policy.
TEST(SimulateCommandTest, CompareRunsEveryPolicyOnTheSpec) {
  const std::string spec = WriteTemp(
      "compare.yaml", AppDoc("cmp",
                             "    algorithm: kpa\n    minReplicas: 0\n"
                             "    scaleToZeroGracePeriod: 30s\n",
                             "  template: {command: [x], concurrency: 1}\n"));
  // Four requests five minutes apart: a fixed 10-minute keep-alive keeps
  // the instance between them, Knative's KPA does not.
  const std::string trace = WriteTemp(
      "compare.csv",
      "arrival_s,service_ms\n10,1000\n310,1000\n610,1000\n910,1000\n");
  const std::string svg = ::testing::TempDir() + "/compare.svg";
  SimulateOptions so;
  so.spec_path = spec;
  so.trace_path = trace;
  so.plot_path = svg;
  so.compare = true;
  std::ostringstream out, err;
  ASSERT_TRUE(RunSimulateCommand(so, out, err).ok()) << out.str() << err.str();
  const std::string text = out.str();
  EXPECT_NE(text.find("the spec's algorithm is kpa (*)"), std::string::npos)
      << text;
  // Each policy's line carries what a run of that algorithm alone gives.
  auto app = ReadSimulatedApp(spec, "", err);
  ASSERT_TRUE(app.ok()) << app.status();
  auto t = scaler::ReadTrace(trace, scaler::TraceOptions());
  ASSERT_TRUE(t.ok()) << t.status();
  int64_t kpa_cold = -1, keepalive_cold = -1;
  for (const char* algorithm : {"tidal", "kpa", "hpa", "keepalive", "hybrid"}) {
    SimulateOptions one = so;
    one.compare = false;
    one.algorithm = algorithm;
    SimOptions sim = SimOptionsFor(*app, one);
    // The keep-alive baseline is the fixed 10 minutes (the spec's 30 s
    // grace period is kpa's).
    if (std::string(algorithm) == "keepalive")
      sim.scaling.set_scale_to_zero_grace_period_ms(600000);
    auto r = Simulate(*t, sim);
    ASSERT_TRUE(r.ok()) << r.status();
    const std::string row = absl::StrFormat(
        "%s %s (", std::string(algorithm) == "kpa" ? "*" : " ", algorithm);
    const size_t at = text.find(row);
    ASSERT_NE(at, std::string::npos) << row << "\n" << text;
    const std::string line = text.substr(at, text.find('\n', at) - at);
    EXPECT_NE(
        line.find(absl::StrFormat(" %.2f ", r->all.instance_seconds / 3600)),
        std::string::npos)
        << line;
    EXPECT_NE(line.find(absl::StrFormat(" %d ", r->all.cold_starts)),
              std::string::npos)
        << line;
    if (std::string(algorithm) == "kpa") kpa_cold = r->all.cold_starts;
    if (std::string(algorithm) == "keepalive")
      keepalive_cold = r->all.cold_starts;
  }
  EXPECT_EQ(kpa_cold, 4);
  EXPECT_EQ(keepalive_cold, 1);
  EXPECT_NE(text.find("keepalive (fixed keep-alive 10m)"), std::string::npos)
      << text;
  // The plot: the load and one line per policy, named in the legend.
  std::ifstream f(svg);
  std::stringstream content;
  content << f.rdbuf();
  size_t lines = 0;
  for (size_t at = content.str().find("<polyline"); at != std::string::npos;
       at = content.str().find("<polyline", at + 1))
    ++lines;
  EXPECT_EQ(lines, 6u);
  EXPECT_NE(content.str().find(">hybrid (hybrid histogram)</text>"),
            std::string::npos);
  std::remove(svg.c_str());
  // --compare replaces --algorithm.
  so.algorithm = "hpa";
  EXPECT_EQ(RunSimulateCommand(so, out, err).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SimulateCommandTest, InvalidSpecIsRefusedWithFileLineAndField) {
  // Valid for the old ScalingReader, invalid for the API.
  const std::string spec = WriteTemp(
      "invalid.yaml", AppDoc("a", "    maxReplicas: 3\n    initialScale: 5\n"));
  const std::string trace =
      WriteTemp("invalid.csv", "arrival_s,service_ms\n10,1000\n");
  SimulateOptions so;
  so.spec_path = spec;
  so.trace_path = trace;
  std::ostringstream out, err;
  absl::Status st = RunSimulateCommand(so, out, err);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "1 problem in the spec; nothing was simulated");
  EXPECT_EQ(err.str(), spec +
                           ":9:19: spec.scaling.initialScale: must be <= "
                           "maxReplicas (5 > 3)\n");
  EXPECT_EQ(err.str(), ApplyErrors(spec));
  EXPECT_EQ(out.str(), "");  // nothing simulated
  // Without an error stream, the errors lead the status message.
  st = RunSimulateCommand(so, out);
  EXPECT_EQ(st.message(),
            absl::StrCat(ApplyErrors(spec),
                         "1 problem in the spec; nothing was simulated"));
}

TEST(SimulateCommandTest, UnknownFieldsInSchedulesAndBehaviorAreRefused) {
  const std::string spec =
      WriteTemp("unknown.yaml", AppDoc("a",
                                       "    schedules:\n"
                                       "      - cron: \"0 19 * * *\"\n"
                                       "        timeZone: UTC\n"
                                       "        duration: 4h\n"
                                       "        minReplicas: 2\n"
                                       "        minReplica: 3\n"
                                       "    behavior:\n"
                                       "      scaleDown:\n"
                                       "        stabilizationWindow: 10\n"));
  SimulateOptions so;
  so.spec_path = spec;
  so.trace_path = WriteTemp("unknown.csv", "arrival_s,service_ms\n10,1000\n");
  std::ostringstream out, err;
  absl::Status st = RunSimulateCommand(so, out, err);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "2 problems in the spec; nothing was simulated");
  EXPECT_NE(err.str().find(spec + ":13:9: spec.scaling.schedules[0]."
                                  "minReplica: unknown field"),
            std::string::npos)
      << err.str();
  EXPECT_NE(err.str().find(spec + ":16:9: spec.scaling.behavior.scaleDown."
                                  "stabilizationWindow: unknown field"),
            std::string::npos)
      << err.str();
  EXPECT_EQ(err.str(), ApplyErrors(spec));
}

TEST(SimulateCommandTest, PicksTheAppNamedByAppOrTheOnlyOne) {
  const std::string spec = WriteTemp(
      "two.yaml", absl::StrCat(AppDoc("one", "    algorithm: kpa\n"), "---\n",
                               AppDoc("two", "    algorithm: hpa\n")));
  std::ostringstream err;
  auto app = ReadSimulatedApp(spec, "", err);
  EXPECT_EQ(app.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(app.status().message().find("choose one with --app (one, two)"),
            std::string::npos)
      << app.status();
  app = ReadSimulatedApp(spec, "two", err);
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(app->spec().scaling().algorithm(), "hpa");
  app = ReadSimulatedApp(spec, "three", err);
  EXPECT_EQ(app.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(app.status().message().find("no app named \"three\""),
            std::string::npos)
      << app.status();
  const std::string single = WriteTemp("one.yaml", AppDoc("solo", "    {}\n"));
  app = ReadSimulatedApp(single, "", err);
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(app->metadata().name(), "solo");
  EXPECT_EQ(err.str(), "");
  app = ReadSimulatedApp(::testing::TempDir() + "/none.yaml", "", err);
  EXPECT_EQ(app.status().code(), absl::StatusCode::kNotFound);
}

// One request at `at` seconds, one second long, in a 400 s trace.
Trace OneRequest(double at = 100) {
  Trace t;
  t.duration_s = 400;
  t.apps.push_back({"a", {{at, 1}}});
  return t;
}

TEST(SimulateCommandTest, MinReplicasZeroStartsAtZero) {
  std::ostringstream err;
  SimulateOptions opts;
  for (bool explicit_initial : {false, true}) {
    SCOPED_TRACE(explicit_initial);
    // kpa keeps an initial instance for the stable window and the grace
    // period, so a request at 30 s finds it warm when there is one.
    const std::string spec = WriteTemp(
        "zero.yaml",
        AppDoc("a",
               absl::StrCat("    algorithm: kpa\n    minReplicas: 0\n",
                            explicit_initial ? "    initialScale: 1\n" : "")));
    auto app = ReadSimulatedApp(spec, "", err);
    ASSERT_TRUE(app.ok()) << app.status();
    SimOptions so = SimOptionsFor(*app, opts);
    EXPECT_EQ(so.scaling.initial_scale(), explicit_initial ? 1 : 0);
    so.record_series = true;
    auto r = Simulate(OneRequest(30), so);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_FALSE(r->series.empty());
    // As tidald: no instance until the first request without initialScale.
    EXPECT_EQ(r->series[0].ready, explicit_initial ? 1 : 0);
    EXPECT_EQ(r->all.cold_starts, explicit_initial ? 0 : 1);
  }
  // The tidal algorithm too: no initial instance to scale down at 0 s.
  const std::string spec =
      WriteTemp("zero.yaml", AppDoc("a", "    minReplicas: 0\n"));
  auto app = ReadSimulatedApp(spec, "", err);
  ASSERT_TRUE(app.ok()) << app.status();
  auto r = Simulate(OneRequest(), SimOptionsFor(*app, opts));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->events.empty());
  EXPECT_EQ(r->events[0].from, 0) << r->events[0].reason;
}

TEST(SimulateCommandTest, ExplicitGracePeriodIsTheTidalFallbackKeepAlive) {
  std::ostringstream err;
  SimulateOptions opts;
  double seconds[2];
  for (bool grace : {false, true}) {
    // 30 s is the default grace: only the fallback keep-alive differs.
    const std::string spec = WriteTemp(
        "grace.yaml",
        AppDoc("a",
               absl::StrCat("    minReplicas: 0\n    initialScale: 0\n",
                            grace ? "    scaleToZeroGracePeriod: 30s\n" : "")));
    auto app = ReadSimulatedApp(spec, "", err);
    ASSERT_TRUE(app.ok()) << app.status();
    SimOptions so = SimOptionsFor(*app, opts);
    EXPECT_EQ(so.scaler.tidal_fallback_keep_alive,
              grace ? absl::Seconds(30) : absl::Hours(4));
    auto r = Simulate(OneRequest(), so);
    ASSERT_TRUE(r.ok()) << r.status();
    seconds[grace] = r->all.instance_seconds;
  }
  // The instance outlives the request by the keep-alive: 4 h (cut at the
  // trace's end) without the grace period, far less with it.
  EXPECT_GT(seconds[0], 250) << seconds[1];
  EXPECT_LT(seconds[1], 200) << seconds[0];
}

// The figures the decisions depend on.
void ExpectSameConfig(const ScalerConfig& a, const ScalerConfig& b) {
  EXPECT_EQ(a.algorithm, b.algorithm);
  EXPECT_EQ(a.metric, b.metric);
  EXPECT_EQ(a.min_replicas, b.min_replicas);
  EXPECT_EQ(a.max_replicas, b.max_replicas);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.target_utilization, b.target_utilization);
  EXPECT_EQ(a.stable_window, b.stable_window);
  EXPECT_EQ(a.panic_window_percentage, b.panic_window_percentage);
  EXPECT_EQ(a.panic_threshold, b.panic_threshold);
  EXPECT_EQ(a.max_scale_up_rate, b.max_scale_up_rate);
  EXPECT_EQ(a.max_scale_down_rate, b.max_scale_down_rate);
  EXPECT_EQ(a.scale_down_delay, b.scale_down_delay);
  EXPECT_EQ(a.scale_to_zero_grace, b.scale_to_zero_grace);
  EXPECT_EQ(a.target_wait_p99, b.target_wait_p99);
  EXPECT_EQ(a.initial_scale, b.initial_scale);
  EXPECT_EQ(a.tolerance, b.tolerance);
  EXPECT_EQ(a.user_behavior, b.user_behavior);
  EXPECT_EQ(a.scale_down.stabilization, b.scale_down.stabilization);
  EXPECT_EQ(a.user_scale_down.stabilization, b.user_scale_down.stabilization);
  EXPECT_EQ(a.user_scale_up.policies.size(), b.user_scale_up.policies.size());
  ASSERT_EQ(a.schedules.size(), b.schedules.size());
  for (size_t i = 0; i < a.schedules.size(); ++i) {
    EXPECT_EQ(a.schedules[i].name, b.schedules[i].name);
    EXPECT_EQ(a.schedules[i].duration, b.schedules[i].duration);
    EXPECT_EQ(a.schedules[i].min_replicas, b.schedules[i].min_replicas);
    EXPECT_EQ(a.schedules[i].zone, b.schedules[i].zone);
  }
  EXPECT_EQ(a.predictive, b.predictive);
  EXPECT_EQ(a.tick, b.tick);
  EXPECT_EQ(a.keep_alive, b.keep_alive);
}

TEST(SimulateCommandTest, SameScalerConfigAsThePlanner) {
  const std::string spec =
      WriteTemp("same.yaml",
                AppDoc("a",
                       "    minReplicas: 0\n"
                       "    maxReplicas: 30\n"
                       "    target: 3\n"
                       "    stableWindow: 30s\n"
                       "    scaleToZeroGracePeriod: 45s\n"
                       "    scaleDownDelay: 10s\n"
                       "    schedules:\n"
                       "      - name: evening\n"
                       "        cron: \"0 19 * * *\"\n"
                       "        timeZone: Asia/Shanghai\n"
                       "        duration: 4h\n"
                       "        minReplicas: 5\n"
                       "    behavior:\n"
                       "      scaleDown:\n"
                       "        stabilizationWindowSeconds: 20\n",
                       "  template:\n    command: [x]\n    concurrency: 4\n"));
  std::ostringstream err;
  auto app = ReadSimulatedApp(spec, "", err);
  ASSERT_TRUE(app.ok()) << app.status() << err.str();
  // What the planner builds (multi_scaler.cc: AppScalerInputsFor, then
  // AppScaler::Create).
  const AppScalerInputs planner = AppScalerInputsFor(app->spec());
  auto planner_scaler =
      AppScaler::Create(planner.scaling, absl::UnixEpoch(), planner.options);
  ASSERT_TRUE(planner_scaler.ok()) << planner_scaler.status();
  // What the simulator builds (simulator.cc: ResolveConfig with the model's
  // concurrency, which is template.concurrency here).
  SimulateOptions opts;
  const SimOptions so = SimOptionsFor(*app, opts);
  EXPECT_EQ(so.model.concurrency, 4);
  EXPECT_EQ(so.scaler.container_concurrency,
            planner.options.container_concurrency);
  EXPECT_EQ(so.scaler.tidal_fallback_keep_alive, absl::Seconds(45));
  EXPECT_EQ(so.scaler.tidal_fallback_keep_alive,
            planner.options.tidal_fallback_keep_alive);
  EXPECT_EQ(so.scaler.tidal_wait_sizing, planner.options.tidal_wait_sizing);
  EXPECT_EQ(so.scaling.SerializeAsString(),
            planner.scaling.SerializeAsString());
  auto sim = ResolveConfig(so.scaling, so.model.concurrency);
  ASSERT_TRUE(sim.ok()) << sim.status();
  ExpectSameConfig(*sim, (*planner_scaler)->config());
  EXPECT_EQ(sim->initial_scale, 0);  // minReplicas 0 without initialScale
  EXPECT_EQ(sim->target, 3);
  EXPECT_EQ(sim->max_replicas, 30);
}

}  // namespace
}  // namespace tidal::cli
