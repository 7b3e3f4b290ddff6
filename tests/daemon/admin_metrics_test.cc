// The Prometheus text tidald writes outside the gateway (issue 16, metrics
// hygiene): per-app scaler and rollout series, HELP and TYPE on each.
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "daemon/admin_server.h"
#include "gtest/gtest.h"

namespace tidal {
namespace {

// Every sample's metric name has one # HELP and one # TYPE before it.
void ExpectHelpAndType(const std::string& text) {
  std::map<std::string, int> help, type;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> w = absl::StrSplit(line, ' ');
    if (w.size() >= 3 && w[0] == "#" && w[1] == "HELP") {
      ++help[std::string(w[2])];
    } else if (w.size() >= 4 && w[0] == "#" && w[1] == "TYPE") {
      ++type[std::string(w[2])];
    } else if (!absl::StartsWith(line, "#")) {
      std::string name(line.substr(0, line.find_first_of("{ ")));
      EXPECT_EQ(help[name], 1) << name;
      EXPECT_EQ(type[name], 1) << name;
    }
  }
}

TEST(AppMetricsTextTest, ScalerAndRolloutSeriesPerApp) {
  tidal::v1::App web;
  web.mutable_metadata()->set_namespace_("default");
  web.mutable_metadata()->set_name("web");
  web.mutable_status()->set_desired_replicas(3);
  web.mutable_status()->set_ready_replicas(2);
  web.mutable_status()->mutable_scaling()->set_panic(true);
  web.mutable_status()->mutable_rollout()->set_phase("Progressing");
  tidal::v1::App api = web;
  api.mutable_metadata()->set_name("api");
  api.mutable_status()->mutable_scaling()->set_panic(false);
  api.mutable_status()->mutable_rollout()->set_phase("RolledBack");
  (*api.mutable_status()->mutable_rollout()->mutable_rollbacks())["CrashLoop"] =
      1;
  (*api.mutable_status()
        ->mutable_rollout()
        ->mutable_rollbacks())["AnalysisFailed"] = 2;
  const std::string text = AppMetricsText({web, api});
  // Rollbacks (issue 16): a counter per reason that happened, in reason
  // order; none for an app that never rolled back.
  EXPECT_TRUE(absl::StrContains(
      text,
      "# TYPE tidal_app_rollbacks_total counter\n"
      "tidal_app_rollbacks_total{namespace=\"default\",app=\"api\","
      "reason=\"AnalysisFailed\"} 2\n"
      "tidal_app_rollbacks_total{namespace=\"default\",app=\"api\","
      "reason=\"CrashLoop\"} 1\n#"))
      << text;
  EXPECT_FALSE(absl::StrContains(
      text, "tidal_app_rollbacks_total{namespace=\"default\",app=\"web\""));
  for (const char* want :
       {"# TYPE tidal_app_desired_replicas gauge\n",
        "tidal_app_desired_replicas{namespace=\"default\",app=\"web\"} 3\n",
        "tidal_app_ready_replicas{namespace=\"default\",app=\"web\"} 2\n",
        "tidal_app_scaler_panic{namespace=\"default\",app=\"web\"} 1\n",
        "tidal_app_scaler_panic{namespace=\"default\",app=\"api\"} 0\n",
        "tidal_app_rollout_phase{namespace=\"default\",app=\"web\","
        "phase=\"Progressing\"} 1\n",
        "tidal_app_rollout_phase{namespace=\"default\",app=\"web\","
        "phase=\"RolledBack\"} 0\n",
        "tidal_app_rollout_phase{namespace=\"default\",app=\"api\","
        "phase=\"RolledBack\"} 1\n"}) {
    EXPECT_TRUE(absl::StrContains(text, want)) << want << "\n" << text;
  }
  ExpectHelpAndType(text);
  ExpectHelpAndType(AppMetricsText({}));
}

TEST(ProcessMetricsTextTest, EverySeriesHasHelpAndType) {
  ExpectHelpAndType(ProcessMetricsText());
}

}  // namespace
}  // namespace tidal
