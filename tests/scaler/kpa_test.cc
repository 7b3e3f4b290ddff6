// Knative KPA compatibility: rows from knative/serving's
// pkg/autoscaler/scaling/autoscaler_test.go (spec: target utilization 75%
// presumed there, panic threshold 2, max scale up/down rate 10, stable 60s).

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

TEST(KpaTest, StartsInPanicAboveOnePod) {
  EXPECT_FALSE(KpaDecider(Params(10), kT0, 1).panicking());
  KpaDecider d(Params(10), kT0, 2);
  EXPECT_TRUE(d.panicking());
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
