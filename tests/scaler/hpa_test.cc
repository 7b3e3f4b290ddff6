// Kubernetes HPA compatibility: the replica calculator (tables from
// kubernetes pkg/controller/podautoscaler/replica_calculator_test.go), the
// nil-behavior normalization (horizontal_test.go), the API's default
// behavior (scale-up max(100%, 4 pods) per 15 s; scale-down 300 s
// stabilization, 100% per 15 s) and user policies, as documented in
// https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/.

#include "scaler/hpa.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "scaler/config.h"

namespace tidal::scaler {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

// The API's default behavior (what an empty `behavior: {}` resolves to).
HpaDecider Default() {
  auto c = ResolveConfig(tidal::v1::Scaling());
  return HpaDecider(c->scale_up, c->scale_down, HpaTolerances{});
}

// Pods as Kubernetes' groupPods leaves them. Values and requests in
// milli-units per pod; the upstream fixtures give every pod two containers
// with the same usage and request, which doubles both sides of each ratio,
// so the per-container figures are used here.
HpaPod R(int64_t value, int64_t request = 1000) {
  return {HpaPod::kReady, value, request};
}
HpaPod U(int64_t value, int64_t request = 1000) {
  return {HpaPod::kUnready, value, request};
}
HpaPod M(int64_t request = 1000) { return {HpaPod::kMissing, 0, request}; }
HpaPod I() { return {HpaPod::kIgnored, 0, 1000}; }

struct CalcRow {
  const char* name;  // the upstream case
  int32_t current;
  std::vector<HpaPod> pods;
  int64_t target;
  int32_t want;
  int64_t want_usage;
  HpaTolerances tol = {};  // {down, up}
  bool ok = true;
};

// kubernetes pkg/controller/podautoscaler/replica_calculator_test.go:
// TestReplicaCalcResourceScale, TestReplicaCalcResourceTolerance and
// TestReplicaCalcResourceMissingMetrics (GetResourceReplicas, target in
// percent of the requests; utilization is an integer percent, floored).
// Not ported: the container-metric rows (a Tidal instance is one process),
// "superfluous metrics counted" and "disjoint pod and metric names" (the
// metrics API returning pods that do not exist), and the hot-CPU rows as
// separate cases: Tidal does not model cpuInitializationPeriod; a pod
// groupPods calls unready for it is the same kUnready row as a not-ready
// one (an instance is unready until its readiness probe passes). Pods
// failed and pods being deleted are both kIgnored (one row).
TEST(HpaTest, ReplicaCalcResourceTable) {
  const CalcRow rows[] = {
      {"scale up", 3, {R(300), R(500), R(700)}, 30, 5, 50},
      {"scale up: unready pod scales less",
       3,
       {U(300), R(500), R(700)},
       30,
       4,
       60},
      {"no scale: unready pods ignored",
       3,
       {R(400), U(500), U(700)},
       30,
       3,
       40},
      {"scale up: failed pods ignored",
       2,
       {R(500), R(700), I(), I()},
       30,
       4,
       60},
      {"scale down", 5, {R(100), R(300), R(500), R(250), R(250)}, 50, 3, 28},
      {"scale down: exclude unready pods",
       5,
       {R(100), R(300), R(500), U(250), U(250)},
       50,
       2,
       30},
      {"scale down: exclude unscheduled pods",
       5,
       {R(100), U(0), U(0), U(0), U(0)},
       50,
       1,
       10},
      {"scale down: failed pods ignored",
       5,
       {R(100), R(300), R(500), R(250), R(250), I(), I()},
       50,
       3,
       28},
      // TestReplicaCalcResourceTolerance (requests 0.9, 1.0 and 1.1 cpu).
      {"within default tolerance",
       3,
       {R(1010, 900), R(1030, 1000), R(1020, 1100)},
       100,
       3,
       102},
      {"outside 0% tolerance",
       3,
       {R(909, 900), R(1010, 1000), R(1111, 1100)},
       100,
       4,
       101,
       {0, 0}},
      {"within 200% scale-up tolerance",
       3,
       {R(1890, 900), R(1910, 1000), R(1900, 1100)},
       100,
       3,
       190,
       {0.1, 2.0}},
      {"outside 8% scale-up tolerance (superfluous scale-down tolerance)",
       3,
       {R(1100, 900), R(1080, 1000), R(1090, 1100)},
       100,
       4,
       109,
       {2.0, 0.08}},
      {"within 36% scale-down tolerance",
       3,
       {R(660, 900), R(640, 1000), R(650, 1100)},
       100,
       3,
       65,
       {0.36, 0.1}},
      {"outside 34% scale-down tolerance",
       3,
       {R(660, 900), R(640, 1000), R(650, 1100)},
       100,
       2,
       65,
       {0.34, 0.1}},
      // TestReplicaCalcResourceMissingMetrics.
      {"some pods missing metrics scales down",
       4,
       {R(400), R(95), M(), M()},
       100,
       3,
       24},
      {"no change: metric equal to target", 2, {R(1000), M()}, 100, 2, 100},
      {"no change: metric above target", 2, {R(1900), M()}, 100, 2, 190},
      {"no change: metric below target", 2, {R(600), M()}, 100, 2, 60},
      {"no change: unready pod metric missing",
       3,
       {U(100), R(450), M()},
       50,
       3,
       45},
      {"scale up: unready pod metric missing",
       3,
       {U(100), R(2000), M()},
       50,
       4,
       200},
      {"scale down: unready pod metric missing",
       4,
       {U(100), R(100), R(100), M()},
       50,
       3,
       10},
      {"scale down: target over 100",
       4,
       {U(200, 1000), R(100, 1000), R(100, 2000), M(2000)},
       300,
       2,
       6},
      {"rolling update with maxSurge: extra pod missing metric",
       2,
       {R(100), R(100), M()},
       50,
       2,
       10},
      {"no metrics returned from metrics API",
       4,
       {M(), M(), M()},
       100,
       0,
       0,
       {},
       false},
      {"missing CPU request on container",
       1,
       {R(200, 0)},
       100,
       0,
       0,
       {},
       false},
      // Issue 13: the tolerance edge is inclusive (110% and 90% of a 100%
      // target keep the count) and the utilization is floored (111.9% is
      // 111%, outside the band).
      {"ratio 1.1, tolerance 0.1",
       4,
       {R(1100), R(1100), R(1100), R(1100)},
       100,
       4,
       110},
      {"ratio 0.9, tolerance 0.1",
       4,
       {R(900), R(900), R(900), R(900)},
       100,
       4,
       90},
      {"utilization floored",
       4,
       {R(1119), R(1119), R(1119), R(1119)},
       100,
       5,
       111},
  };
  for (const CalcRow& r : rows) {
    const HpaReplicas got =
        HpaDecider::ResourceReplicas(r.pods, r.current, r.target, r.tol);
    EXPECT_EQ(got.ok, r.ok) << r.name;
    if (!r.ok) continue;
    EXPECT_EQ(got.replicas, r.want) << r.name;
    EXPECT_EQ(got.usage, r.want_usage) << r.name;
  }
}

// replica_calculator_test.go: TestReplicaCalcPodMetric (GetMetricReplicas,
// a plain per-pod target in milli-units; the usage is the floored average).
// groupPods checks readiness for cpu only, so the upstream "unready hot-CPU"
// pods of a plain metric are ready rows here.
TEST(HpaTest, ReplicaCalcPlainTable) {
  const CalcRow rows[] = {
      {"scale up", 3, {R(20000), R(10000), R(30000)}, 15000, 4, 20000},
      {"scale up: unready hot-CPU pods count for a plain metric",
       3,
       {R(50000), R(10000), R(30000)},
       15000,
       6,
       30000},
      {"scale up: unready hot-CPU pods avoid scale-down",
       3,
       {R(50000), R(15000), R(30000)},
       15000,
       7,
       31666},
      {"scale down",
       5,
       {R(12000), R(12000), R(12000), R(12000), R(12000)},
       20000,
       3,
       12000},
      {"within default tolerance",
       3,
       {R(20000), R(21000), R(21000)},
       20000,
       3,
       20666},
      {"outside configurable 1% tolerance",
       3,
       {R(20000), R(21000), R(21000)},
       20000,
       4,
       20666,
       {0.1, 0.01}},
      {"no change: missing metrics",
       5,
       {R(20000), R(19000), R(21000), M(), M()},
       20000,
       5,
       20000},
      {"rolling update with maxSurge: extra pod missing metric",
       2,
       {R(10000), R(10000), M()},
       17000,
       2,
       10000},
      // Tidal: instances still starting are unready; on a scale-up they
      // count at 0, so 2 ready at twice the target with 2 starting ask for
      // 4, not 8.
      {"starting instances count at 0 on a scale-up",
       4,
       {R(20000), R(20000), U(0), U(0)},
       10000,
       4,
       20000},
      {"ratio 1.1, tolerance 0.1", 10, std::vector<HpaPod>(10, R(11000)), 10000,
       10, 11000},
  };
  for (const CalcRow& r : rows) {
    const HpaReplicas got =
        HpaDecider::PlainReplicas(r.pods, r.current, r.target, r.tol);
    EXPECT_EQ(got.ok, r.ok) << r.name;
    EXPECT_EQ(got.replicas, r.want) << r.name;
    EXPECT_EQ(got.usage, r.want_usage) << r.name;
  }
}

// horizontal_test.go: TestConvertDesiredReplicasWithRules (nil behavior:
// scale-up at most max(2 x current, 4) per sync, within min and max).
TEST(HpaTest, NilBehaviorConvertWithRules) {
  struct Row {
    int32_t current, desired, min, max, want;
    const char* annotation;
  } rows[] = {
      {5, 7, 3, 8, 7, "prenormalized desired replicas within range"},
      {3, 1, 2, 8, 2, "prenormalized desired replicas < minReplicas"},
      {1, 0, 0, 10, 1, "1 is minLimit because hpaMinReplicas < 1"},
      {20, 1000, 1, 10, 10,
       "maxReplicas is the limit because maxReplicas < scaleUpLimit"},
      {3, 1000, 1, 2000, 6,
       "scaleUpLimit is the limit because scaleUpLimit < maxReplicas"},
      {1, 1000, 1, 2000, 4, "scaleUpLimit is at least 4"},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(HpaDecider::ConvertWithRules(r.current, r.desired, r.min, r.max),
              r.want)
        << r.annotation;
  }
}

// horizontal_test.go: TestNormalizeDesiredReplicas (stabilizeRecommendation
// over a 5 minute window: the largest recommendation not older than the
// window; the oldest stale entry is replaced, else one is appended).
TEST(HpaTest, NilBehaviorStabilize) {
  using Rec = HpaDecider::Recommendation;
  const absl::Time now = kT0;
  auto ago = [&](int minutes) { return now - absl::Minutes(minutes); };
  struct Row {
    const char* name;
    std::vector<Rec> log;
    int32_t rec, want;
    size_t want_log;
  } rows[] = {
      {"empty log", {}, 5, 5, 1},
      {"stabilize", {{4, ago(2)}, {5, ago(1)}}, 3, 5, 3},
      {"no stabilize", {{1, ago(2)}, {2, ago(1)}}, 3, 3, 3},
      {"no stabilize - old recommendations",
       {{10, ago(10)}, {9, ago(9)}},
       3,
       3,
       2},
      {"stabilize - old recommendations",
       {{10, ago(10)}, {4, ago(1)}, {5, ago(2)}, {9, ago(9)}},
       3,
       5,
       4},
  };
  for (Row& r : rows) {
    EXPECT_EQ(HpaDecider::StabilizeNil(&r.log, now, absl::Minutes(5), r.rec),
              r.want)
        << r.name;
    EXPECT_EQ(r.log.size(), r.want_log) << r.name;
  }
}

// A spec without `behavior` gets Kubernetes' nil-behavior normalization,
// not the API's default policies: scale-up max(2 x current, 4) per sync (not
// max(100%, 4 pods) per 15 s) and no scale-down rate limit. The count at
// the first sync is a recommendation like the others
// (recordInitialRecommendation, for every HPA): no scale-down below it for
// the 300 s window.
TEST(HpaTest, NoBehaviorUsesTheNilBehaviorRules) {
  tidal::v1::Scaling s;
  s.set_algorithm("hpa");
  auto c = ResolveConfig(s);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_FALSE(c->user_behavior);
  {
    HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{}, true);
    // From 1: max(2, 4) = 4 (the API defaults would allow 5).
    EXPECT_EQ(d.Normalize(kT0, 100, 1, 1, 1000), 4);
    // Limited per sync, not per 15 s period: 5 s later from 4, 8.
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(5), 100, 4, 1, 1000), 8);
  }
  {
    // The first sync wants 2 of 10: the count it found (10) holds for the
    // window, then it goes to 2 at once (no rate limit). So with a
    // behavior.
    HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{}, true);
    EXPECT_EQ(d.Normalize(kT0, 2, 10, 1, 1000), 10);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(299), 2, 10, 1, 1000), 10);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(301), 2, 10, 1, 1000), 2);
    HpaDecider with_behavior(c->scale_up, c->scale_down, HpaTolerances{});
    EXPECT_EQ(with_behavior.Normalize(kT0, 2, 10, 1, 1000), 10);
  }
  {
    // The first entry counts for the scale-up window too, even with no
    // scale-down window: up 120 s, down 0 s, 2 found, 8 wanted: held at 2
    // for 120 s (stabilizeRecommendationWithBehaviors takes the smallest
    // recommendation of the up window).
    HpaRules up = c->scale_up, down = c->scale_down;
    up.stabilization = absl::Seconds(120);
    down.stabilization = absl::ZeroDuration();
    HpaDecider d(up, down, HpaTolerances{});
    EXPECT_EQ(d.Normalize(kT0, 8, 2, 1, 1000), 2);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(121), 8, 2, 1, 1000), 6);
  }
  {
    // stabilizeRecommendation returns the window's largest recommendation
    // even above the current count: after a capped scale-up (40 wanted, 8
    // allowed) a drop to 5 still scales up, to the cap from 8 (16).
    HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{}, true);
    EXPECT_EQ(d.Normalize(kT0, 40, 4, 1, 1000), 8);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(15), 5, 8, 1, 1000), 16);
  }
  {
    // Later recommendations are stabilized for the 300 s window.
    HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{}, true);
    EXPECT_EQ(d.Normalize(kT0, 10, 10, 1, 1000), 10);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(15), 2, 10, 1, 1000), 10);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(301), 2, 10, 1, 1000), 2);
  }
}

TEST(HpaTest, DirectionTolerancesAreSpecFields) {
  tidal::v1::Scaling s;
  s.set_algorithm("hpa");
  s.set_tolerance(0.2);
  s.mutable_behavior()->mutable_scale_up()->set_tolerance(0.05);
  auto c = ResolveConfig(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->scale_up_tolerance, 0.05);
  EXPECT_DOUBLE_EQ(c->scale_down_tolerance, 0.2);  // scaling.tolerance
  s.mutable_behavior()->mutable_scale_down()->set_tolerance(-0.1);
  auto bad = ResolveConfig(s);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("behavior.scaleDown.tolerance"),
            std::string::npos)
      << bad.status();
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
    HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{});
    EXPECT_EQ(d.Normalize(kT0, 1, 100, 1, 1000), 90);
    // Same minute: already 10 removed in the period, starting count 100.
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(15), 1, 90, 1, 1000), 90);
    EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(61), 1, 90, 1, 1000), 81);
  }
  {
    c->scale_down.select = HpaRules::kMin;  // the smallest change: 4 pods
    HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{});
    EXPECT_EQ(d.Normalize(kT0, 1, 100, 1, 1000), 96);
  }
  {
    c->scale_down.select = HpaRules::kDisabled;
    HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{});
    EXPECT_EQ(d.Normalize(kT0, 1, 100, 1, 1000), 100);
  }
}

TEST(HpaTest, ScaleUpStabilizationTakesTheLowest) {
  tidal::v1::Scaling s;
  s.mutable_behavior()->mutable_scale_up()->set_stabilization_window_seconds(
      60);
  auto c = ResolveConfig(s);
  HpaDecider d(c->scale_up, c->scale_down, HpaTolerances{});
  EXPECT_EQ(d.Normalize(kT0, 3, 3, 1, 100), 3);
  // A spike to 8 only counts once it has lasted the window.
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(15), 8, 3, 1, 100), 3);
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(30), 8, 3, 1, 100), 3);
  EXPECT_EQ(d.Normalize(kT0 + absl::Seconds(61), 8, 3, 1, 100),
            7);  // max(100%, 4 pods)
}

}  // namespace
}  // namespace tidal::scaler
