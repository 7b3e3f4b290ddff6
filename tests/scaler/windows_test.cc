// TimedBuckets keeps a running total of its window: values that leave the
// window are subtracted, which leaves floating-point residues (5.6e-17 after
// 0.1, 0.2, 0.7, 1/6, 1/3). A residue read as load keeps ceil(v / target) at 1
// instance forever (issue 8: a kpa app at minReplicas 0 stalled after its
// second cold start). Averages are rounded as Knative's bucketing.go does, and
// the total is re-summed once per lap.

#include "scaler/windows.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "scaler/autoscaler.h"

namespace tidal::scaler {
namespace {

TEST(TimedBucketsTest, ValuesThatLeaveTheWindowLeaveNoResidue) {
  const std::vector<double> values = {0.1, 0.2, 0.7, 1.0 / 6, 1.0 / 3};
  TimedBuckets b(6);
  int64_t sec = 100;
  for (double v : values) b.Record(sec++, v);
  // Zeros until every value has left the 6 s window, one second at a time.
  for (int i = 0; i < 6; ++i) b.Record(sec++, 0);
  const double avg = b.WindowAverage(sec - 1);
  EXPECT_EQ(avg, 0.0);
  EXPECT_FALSE(std::signbit(avg)) << "never -0";
}

// A write exactly one window after the last starts the window over, as
// Knative's Record does (>= window): the average is that write's, not that
// write over the whole window.
TEST(TimedBucketsTest, AWriteAWholeWindowLaterStartsItOver) {
  TimedBuckets b(6);
  b.Record(100, 3);
  b.Record(106, 12);
  EXPECT_EQ(b.WindowAverage(106), 12);
  b.Record(107, 6);
  EXPECT_EQ(b.WindowAverage(107), 9);
  // Within the window the buckets add up as before.
  TimedBuckets c(6);
  c.Record(100, 3);
  c.Record(105, 12);
  EXPECT_EQ(c.WindowAverage(105), 2.5);
}

TEST(TimedBucketsTest, RoundsToSixDigitsAsKnative) {
  TimedBuckets b(3);
  b.Record(10, 1.0 / 3);
  EXPECT_DOUBLE_EQ(b.WindowAverage(10), 0.333333);
  b.Record(11, 2.0 / 3);
  EXPECT_DOUBLE_EQ(b.WindowAverage(11), 0.5);
}

TEST(TimedBucketsTest, DriftDoesNotOutliveOneLap) {
  // An hour of fractional load through a 6 s window, then silence: the
  // average is exactly 0 however long the history was.
  TimedBuckets b(6);
  int64_t sec = 0;
  for (; sec < 3600; ++sec) b.Record(sec, (sec % 7) / 3.0 + 0.1);
  for (int i = 0; i < 6; ++i, ++sec) b.Record(sec, 0);
  EXPECT_EQ(b.WindowAverage(sec - 1), 0.0);
}

// The reported scenario through AppScaler: kpa, minReplicas 0, stableWindow
// 6 s, scaleToZeroGracePeriod 1 s. Two bursts of fractional concurrency, each
// followed by silence: the app returns to zero after each of them.
TEST(TimedBucketsTest, KpaReturnsToZeroAfterEveryColdStart) {
  tidal::v1::Scaling spec;
  spec.set_algorithm("kpa");
  spec.set_target(1);
  spec.set_min_replicas(0);
  spec.set_stable_window_ms(6000);
  spec.set_scale_to_zero_grace_period_ms(1000);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  auto s = AppScaler::Create(spec, t0, AppScalerOptions{});
  ASSERT_TRUE(s.ok()) << s.status();
  AppScaler& sc = **s;
  const int tick = static_cast<int>(absl::ToInt64Seconds(sc.tick()));
  int32_t ready = 0;
  int sec = 0;
  std::vector<int32_t> after_silence;
  auto run = [&](const std::vector<double>& history) {
    Decision d;
    for (double c : history) {
      MetricSample m;
      m.time = t0 + absl::Seconds(sec);
      m.concurrency = c;
      m.requests = c > 0 ? 1 : 0;
      sc.Record(m);
      ++sec;
      if (sec % tick != 0) continue;
      sc.SetInstances(ready, ready);
      d = sc.Decide(t0 + absl::Seconds(sec) + absl::Milliseconds(100));
      ready = d.desired_replicas;  // instant starts and stops
    }
    return d;
  };
  const std::vector<double> burst = {0.1667, 0.2, 0.7, 1.0 / 3, 0.1};
  for (int round = 0; round < 3; ++round) {
    Decision up = run(burst);
    EXPECT_GE(up.desired_replicas, 1) << "round " << round << ": " << up.reason;
    Decision down = run(std::vector<double>(30, 0.0));
    after_silence.push_back(down.desired_replicas);
    EXPECT_EQ(down.desired_replicas, 0)
        << "round " << round << ": " << down.reason;
  }
}

}  // namespace
}  // namespace tidal::scaler
