// Kubernetes HPA compatibility: the formula, the tolerance, the default
// behavior (scale-up max(100%, 4 pods) per 15 s; scale-down 300 s
// stabilization, 100% per 15 s) and user policies, as documented in
// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/.

#include "scaler/hpa.h"

#include "gtest/gtest.h"
#include "scaler/config.h"

namespace tidal::scaler {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

HpaDecider Default() {
  auto c = ResolveConfig(tidal::v1::Scaling());
  return HpaDecider(c->scale_up, c->scale_down, c->tolerance);
}

TEST(HpaTest, FormulaAndTolerance) {
  HpaDecider d = Default();
  struct Row {
    double ratio;
    int current, ready, want;
  } rows[] = {
      {200.0 / 100, 1, 1, 2},  // docs: current 200m, target 100m -> double
      {50.0 / 100, 4, 4, 2},   // halve
      {1.05, 10, 10, 10},      // within tolerance 0.1: no change
      {0.91, 10, 10, 10},      // within tolerance
      {1.11, 10, 10, 12},      // ceil(11.1)
      {0.85, 10, 10, 9},       // ceil(8.5)
  };
  for (const Row& r : rows) {
    EXPECT_EQ(d.Recommend(r.ratio, r.current, r.ready), r.want) << r.ratio;
  }
}

TEST(HpaTest, DefaultScaleUpIsMaxOf100PercentOr4Pods) {
  HpaDecider d = Default();
  // From 1: max(1 + 100% = 2, 1 + 4 = 5) = 5 per 15 s.
  EXPECT_EQ(d.Normalize(kT0, 100, 1, 1, 1000), 5);
  // Within the same 15 s period nothing more.
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(5), 100, 5, 1, 1000), 5);
  // Next period from 5: max(10, 9) = 10.
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(16), 100, 5, 1, 1000), 10);
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(32), 100, 10, 1, 1000), 20);
  // maxReplicas caps.
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(48), 100, 20, 1, 30), 30);
}

TEST(HpaTest, ScaleDownStabilizationWindow) {
  HpaDecider d = Default();
  EXPECT_EQ(d.Normalize(kT0, 10, 10, 1, 100), 10);
  // Load drops: the highest recommendation of the last 300 s holds.
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(15), 2, 10, 1, 100), 10);
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(150), 2, 10, 1, 100), 10);
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(299), 2, 10, 1, 100), 10);
  // 300 s after the last 10: scale down (100% per 15 s allows it at once).
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(301), 2, 10, 1, 100), 2);
  // Never below minReplicas.
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(700), 0, 2, 1, 100), 1);
}

TEST(HpaTest, UserPoliciesAndSelectPolicy) {
  tidal::v1::Scaling s;
  auto* down = s.mutable_behavior()->mutable_scale_down();
  down->set_stabilization_window_seconds(0);
  auto* p1 = down->add_policies();
  p1->set_type("Pods");
  p1->set_value(4);
  p1->set_period_seconds(60);
  auto* p2 = down->add_policies();
  p2->set_type("Percent");
  p2->set_value(10);
  p2->set_period_seconds(60);
  auto c = ResolveConfig(s);
  ASSERT_TRUE(c.ok()) << c.status();
  {
    // Max (default): the policy allowing the largest change: 4 pods from 40
    // (10% would be 4 as well); from 100: 10% = 10 pods.
    HpaDecider d(c->scale_up, c->scale_down, 0.1);
    EXPECT_EQ(d.Normalize(kT0, 1, 100, 1, 1000), 90);
    // Same minute: already 10 removed in the period, starting count 100.
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(15), 1, 90, 1, 1000), 90);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(61), 1, 90, 1, 1000), 81);
  }
  {
    c->scale_down.select = HpaRules::kMin;  // the smallest change: 4 pods
    HpaDecider d(c->scale_up, c->scale_down, 0.1);
    EXPECT_EQ(d.Normalize(kT0, 1, 100, 1, 1000), 96);
  }
  {
    c->scale_down.select = HpaRules::kDisabled;
    HpaDecider d(c->scale_up, c->scale_down, 0.1);
    EXPECT_EQ(d.Normalize(kT0, 1, 100, 1, 1000), 100);
  }
}

TEST(HpaTest, ScaleUpStabilizationTakesTheLowest) {
  tidal::v1::Scaling s;
  s.mutable_behavior()->mutable_scale_up()->set_stabilization_window_seconds(
      60);
  auto c = ResolveConfig(s);
  HpaDecider d(c->scale_up, c->scale_down, 0.1);
  EXPECT_EQ(d.Normalize(kT0, 3, 3, 1, 100), 3);
  // A spike to 8 only counts once it has lasted the window.
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(15), 8, 3, 1, 100), 3);
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(30), 8, 3, 1, 100), 3);
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(61), 8, 3, 1, 100),
            7);  // max(100%, 4 pods)
}

}  // namespace
}  // namespace tidal::scaler
