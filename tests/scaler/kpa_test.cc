// Knative KPA compatibility: rows from knative/serving's
// pkg/autoscaler/scaling/autoscaler_test.go (spec: target utilization 75%
// presumed there, panic threshold 2, max scale up/down rate 10, stable 60s).
// Not ported: the excess burst capacity (ExcessBurstCapacity, TBC) of each
// expected ScaleResult and the metric-recording tests (TestAutoscalerMetrics*,
// TestAutoscalerStartMetrics): Tidal has no activator burst-capacity routing
// and reports its own metrics (docs/scaling.md).

#include "scaler/kpa.h"

#include "gtest/gtest.h"
#include "scaler/windows.h"

namespace tidal::scaler {
namespace {

KpaParams Params(double target) {
  KpaParams p;
  p.target_value = target;
  p.panic_threshold = 2;
  p.max_scale_up_rate = 10;
  p.max_scale_down_rate = 10;
  p.stable_window = absl::Seconds(60);
  return p;
}

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

struct Row {
  const char* label;
  double target;
  double stable, panic;
  int ready;
  int want;
  double max_up = 10, max_down = 10;
  bool reachable = true;
};

TEST(KpaTest, KnativeScaleTable) {
  const Row rows[] = {
      {"StableModeNoChange", 10, 50, 50, 1, 5},
      {"StableModeNoChangeAlreadyScaled", 10, 50, 50, 5, 5},
      {"Autoscaler0TBC", 10, 50, 49, 1, 5},
      {"StableModeIncreaseWithSmallScaleUpRate", 1, 3, 3.1, 2, 3, 1.1, 10},
      {"StableModeDecreaseWithSmallScaleDownRate", 10, 1, 1, 100, 90, 10, 1.1},
      {"StableModeDecreaseNonReachable", 10, 1, 1, 100, 1, 10, 1.1, false},
      {"PanicModeDoublePodCount", 10, 50, 100, 1, 10},
      {"RateLimitScaleUp", 10, 1000, 1001, 1, 10},
      {"RateLimitScaleUpAgain", 10, 1000, 1001, 10, 100},
      {"RateLimitScaleDown", 10, 1, 1, 100, 10},
      {"RateLimitScaleDownAgain", 10, 1, 1, 10, 1},
      {"NoTrafficScaleToZero", 10, 0, 0, 1, 0},
      {"UseOnePodAsMinimumIfNoEndpoints", 10, 1000, 888, 0, 10},
      {"AutoscalerNoDataAtZeroNoAutoscale", 10, 0, 0, 1, 0},
      // TestAutoscalerStableModeIncreaseWithConcurrencyDefault's first step.
      {"StableModeIncreaseWithConcurrencyDefault", 10, 50, 10, 1, 5},
      {"StableModeDecrease", 10, 50, 50, 8, 5},
      {"StableModeNoTrafficScaleToZero", 10, 0, 0, 1, 0},
  };
  for (const Row& r : rows) {
    KpaParams p = Params(r.target);
    p.max_scale_up_rate = r.max_up;
    p.max_scale_down_rate = r.max_down;
    p.reachable = r.reachable;
    KpaDecider d(p, kT0, 0);
    EXPECT_EQ(d.Scale(kT0, r.stable, r.panic, r.ready).desired, r.want)
        << r.label;
  }
}

TEST(KpaTest, PanicStableLargerThanPanicUsesStable) {
  KpaDecider d(Params(1), kT0, 0);
  // Enter panic at 5 pods first (as the Knative row's prepFunc does).
  EXPECT_EQ(d.Scale(kT0, 1, 10, 5).desired, 10);
  EXPECT_TRUE(d.panicking());
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(5), 50, 30, 5).desired, 50);
}

TEST(KpaTest, PanicStableLessThanPanicUsesPanic) {
  // AutoscalerPanicStableLessThanPanic: panicking with maxPanicPods 5.
  KpaDecider d(Params(1), kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 1, 10, 5).desired, 10);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(5), 20, 30, 5).desired, 30);
}

// TestAutoscalerNoDataNoAutoscale and TestCantCountPods: metrics or the
// ready count unavailable give an invalid result (the caller holds the
// scale); nothing in the panic state changes.
TEST(KpaTest, MissingDataIsAnInvalidResult) {
  KpaDecider d(Params(10), kT0, 0);
  KpaDecider::Result r =
      d.Scale(kT0, KpaDecider::kNoData, KpaDecider::kNoData, 1);
  EXPECT_FALSE(r.valid);
  EXPECT_EQ(r.desired, -1);
  r = d.Scale(kT0, 1000, 888, KpaDecider::kUnknownReady);
  EXPECT_FALSE(r.valid);
  EXPECT_FALSE(d.panicking());
  EXPECT_TRUE(d.Scale(kT0, 1000, 888, 1).valid);
}

// TestAutoscalerUpdateTarget: Update() takes the new target at once.
TEST(KpaTest, UpdateTarget) {
  KpaDecider d(Params(10), kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 100, 101, 1).desired, 10);
  d.Update(Params(1));
  EXPECT_EQ(d.Scale(kT0, 100, 101, 10).desired, 100);
}

// Update() keeps the panic state (Knative's autoscaler keeps panicTime and
// maxPanicPods across Update): no scale-down right after a spec change.
TEST(KpaTest, UpdateKeepsPanicMode) {
  KpaDecider d(Params(10), kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 100, 1000, 10).desired, 100);
  ASSERT_TRUE(d.panicking());
  KpaParams p = Params(20);
  d.Update(p);
  EXPECT_TRUE(d.panicking());
  EXPECT_EQ(d.max_panic_pods(), 100);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(2), 1, 1, 100).desired, 100);
}

// TestAutoscalerExtendPanicWindow: still over the threshold half a stable
// window later moves the panic time, so the panic outlasts a stable window
// from its start.
TEST(KpaTest, ExtendPanicWindow) {
  KpaDecider d(Params(1), kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 11, 25, 10).desired, 25);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(30), 30, 80, 40).desired, 80);
  // 61 s after the start but 31 s after the extension: still panicking.
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(61), 10, 10, 80).desired, 80);
  EXPECT_TRUE(d.panicking());
}

TEST(KpaTest, PanicThenUnpanicScaleDown) {
  KpaDecider d(Params(10), kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 100, 100, 1).desired, 10);
  const absl::Time panic = kT0 + absl::Seconds(2);
  EXPECT_EQ(d.Scale(panic, 100, 1000, 10).desired, 100);
  EXPECT_TRUE(d.panicking());
  // Traffic dropped, but no scale-down while panicking.
  EXPECT_EQ(d.Scale(panic + absl::Seconds(30), 1, 1, 10).desired, 100);
  // A stable window after the last over-threshold tick, panic ends.
  EXPECT_EQ(d.Scale(panic + absl::Seconds(61), 1, 1, 10).desired, 1);
  EXPECT_FALSE(d.panicking());
}

TEST(KpaTest, UnpanicAfterSlowIncrease) {
  KpaDecider d(Params(1), kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 11, 25, 10).desired, 25);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(30), 30, 41, 40).desired, 41);
  // 41/40 < 2: not over the threshold, and 62s after panic started: exits.
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(62), 50, 56, 55).desired, 50);
  EXPECT_FALSE(d.panicking());
}

TEST(KpaTest, ExponentialTrackAndStabilize) {
  KpaDecider d(Params(1), kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 6, 6, 1).desired, 6);
  EXPECT_EQ(d.Scale(kT0, 36, 36, 6).desired, 36);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(1), 216, 216, 36).desired, 216);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(1), 1296, 1296, 216).desired, 1296);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(2), 1296, 1296, 1296).desired, 1296);
}

TEST(KpaTest, ScaleDownDelay) {
  KpaParams p = Params(10);
  p.panic_threshold = 100;
  p.scale_down_delay = absl::Minutes(5);
  KpaDecider d(p, kT0, 0);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(2), 40, 40, 0).desired, 4);
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(5), 0, 0, 0).desired, 4);
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(5) + absl::Seconds(2), 0, 0, 0).desired,
            0);
  // Gradual.
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(9), 40, 40, 0).desired, 4);
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(10), 30, 30, 0).desired, 4);
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(11), 0, 0, 0).desired, 4);
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(14), 0, 0, 0).desired, 3);
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(15), 0, 0, 0).desired, 0);
}

// TestAutoscalerScaleDownDelayNotReachable: an unreachable revision scales
// down at once, without the delay (and without maxScaleDownRate).
TEST(KpaTest, ScaleDownDelayNotReachable) {
  KpaParams p = Params(10);
  p.panic_threshold = 100;
  p.scale_down_delay = absl::Minutes(5);
  KpaDecider d(p, kT0, 0);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(2), 40, 40, 0).desired, 4);
  EXPECT_EQ(d.Scale(kT0 + absl::Minutes(1), 0, 0, 0).desired, 4);
  p.reachable = false;
  d.Update(p);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(2), 0, 0, 0).desired, 0);
}

// TestAutoscalerScaleDownDelayZero: no delay window at all, so two
// decisions within one 2 s bucket take the latest.
TEST(KpaTest, ScaleDownDelayZero) {
  KpaParams p = Params(10);
  p.panic_threshold = 100;
  KpaDecider d(p, kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 40, 40, 0).desired, 4);
  EXPECT_EQ(d.Scale(kT0 + absl::Milliseconds(500), 20, 20, 0).desired, 2);
}

// The delay window counts Knative's 2 s buckets (Unix seconds / 2), not
// exact seconds: a count recorded at an odd second leaves the window one
// second sooner than an exact window would let it.
TEST(KpaTest, ScaleDownDelayIn2sBuckets) {
  KpaParams p = Params(10);
  p.panic_threshold = 100;
  p.scale_down_delay = absl::Seconds(10);  // 5 buckets
  KpaDecider d(p, kT0, 0);                 // kT0 is even
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(1), 40, 40, 0).desired, 4);
  // 8 s later: bucket 4 after it, still inside.
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(9), 0, 0, 0).desired, 4);
  // 9 s later (kT0 + 10 s is bucket 5 after kT0 + 1 s): out, where an exact
  // 10 s window would still hold it until kT0 + 11 s.
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(10), 0, 0, 0).desired, 0);
  // Two decisions in one bucket: the larger counts.
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(20), 30, 30, 0).desired, 3);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(21), 10, 10, 0).desired, 3);
}

// TestStartInPanicMode and TestNewFail: maxPanicPods starts at the ready
// count (0 when it could not be read); panic mode only above one pod.
TEST(KpaTest, StartsInPanicAboveOnePod) {
  for (int ready : {0, 1}) {
    KpaDecider d(Params(10), kT0, ready);
    EXPECT_FALSE(d.panicking()) << ready;
    EXPECT_EQ(d.max_panic_pods(), ready);
  }
  KpaDecider d(Params(10), kT0, 2);
  EXPECT_TRUE(d.panicking());
  EXPECT_EQ(d.max_panic_pods(), 2);
  // Holds the pods it started with until metrics say more.
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(2), 0, 0, 2).desired, 2);
}

TEST(KpaTest, ActivationScale) {
  KpaParams p = Params(10);
  p.activation_scale = 3;
  KpaDecider d(p, kT0, 0);
  EXPECT_EQ(d.Scale(kT0, 1, 1, 0).desired, 3);
  EXPECT_EQ(d.Scale(kT0 + absl::Seconds(2), 0, 0, 0).desired, 0);
}

TEST(WindowsTest, KnativeWindowAverage) {
  TimedBuckets b(60);
  b.Record(100, 10);
  b.Record(101, 20);
  // Partial window: averaged over the 2 seconds written so far.
  EXPECT_DOUBLE_EQ(b.WindowAverage(101), 15);
  // No writes for 10 s: the missing seconds drop out of the divisor.
  EXPECT_DOUBLE_EQ(b.WindowAverage(111), 15);
  // A whole window without data: 0.
  EXPECT_DOUBLE_EQ(b.WindowAverage(161), 0);
  for (int s = 102; s < 200; ++s) b.Record(s, 6);
  EXPECT_DOUBLE_EQ(b.WindowAverage(199), 6);
}

}  // namespace
}  // namespace tidal::scaler
