// The `tidal` algorithm's reaction to a step in load: a 1 s tick, and a burst
// (the latest complete seconds over the panic threshold) sized on its peak
// instead of the panic-window average; KPA's no-scale-down-in-panic holds.

#include <memory>

#include "gtest/gtest.h"
#include "scaler/autoscaler.h"

namespace tidal::scaler {
namespace {

// The e2e surge in numbers: 5 requests per instance (target 5, utilization
// 70%: 3.5), 10 concurrent requests, then 50.
constexpr int kPerInstance = 5;

// Feeds one complete second at a time and decides 100 ms into the next one,
// as the planner does (ticks just after the gateway closes a second).
class Driver {
 public:
  Driver(const char* algorithm, int32_t ready) : ready_(ready) {
    tidal::v1::Scaling spec;
    spec.set_algorithm(algorithm);
    spec.set_min_replicas(1);
    spec.set_max_replicas(30);
    spec.set_metric("concurrency");
    spec.set_target(kPerInstance);
    AppScalerOptions o;
    o.container_concurrency = kPerInstance;
    // The burst and panic mechanics under Knative's sizing (target x
    // utilization); the waiting-time sizing has its own tests
    // (wait_sizing_test.cc).
    o.tidal_wait_sizing = false;
    o.ready_at_start = ready;
    o.current_at_start = ready;
    auto s = AppScaler::Create(spec, t0_, o);
    EXPECT_TRUE(s.ok()) << s.status();
    s_ = std::move(*s);
  }

  // Records second `sec_` with concurrency `c`; returns the decision of the
  // tick that follows it.
  Decision Second(double c) {
    s_->Record({t0_ + absl::Seconds(sec_), c, c});
    ++sec_;
    s_->SetInstances(ready_, ready_);
    return s_->Decide(t0_ + absl::Seconds(sec_) + absl::Milliseconds(100));
  }
  // `seconds` seconds of steady load `c`, the ready count following the
  // decisions (instances start at once).
  Decision Settle(double c, int seconds) {
    Decision d;
    for (int i = 0; i < seconds; ++i) {
      d = Second(c);
      ready_ = d.desired_replicas;
    }
    return d;
  }

  AppScaler& scaler() { return *s_; }
  int32_t ready_ = 0;

 private:
  const absl::Time t0_ = absl::FromUnixSeconds(1700000000);
  int64_t sec_ = 0;
  std::unique_ptr<AppScaler> s_;
};

TEST(TidalSurgeTest, DefaultTickIsOneSecondKpaKeepsTwo) {
  Driver tidal("tidal", 1), kpa("kpa", 1);
  EXPECT_EQ(tidal.scaler().tick(), absl::Seconds(1));
  EXPECT_EQ(kpa.scaler().tick(), absl::Seconds(2));
  tidal::v1::Scaling spec;
  spec.set_tick_ms(2000);
  auto s = AppScaler::Create(spec, absl::UnixEpoch());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->tick(), absl::Seconds(2));  // an explicit tick wins
}

// A step that starts mid-second: the first second holds part of it, the
// next one all of it. The decision of the tick right after that first
// complete second already reaches what the load needs.
TEST(TidalSurgeTest, StepReachesNeededOneTickAfterItsFirstCompleteSecond) {
  Driver d("tidal", 1);
  Decision before = d.Settle(10, 120);
  ASSERT_EQ(before.desired_replicas, 3);  // ceil(10 / 3.5)
  ASSERT_FALSE(before.panic);
  const int needed = (50 + kPerInstance - 1) / kPerInstance;  // 10 busy
  // Half a second of the step: 10 + 40 / 2. Already a burst (9 pods for 3
  // ready), sized on its own peak.
  Decision partial = d.Second(30);
  EXPECT_TRUE(partial.panic);
  EXPECT_EQ(partial.desired_replicas, 9);  // ceil(30 / 3.5)
  // The first complete second of 50 (the 9 are still starting: 3 ready).
  Decision first = d.Second(50);
  EXPECT_GE(first.desired_replicas, needed);
  EXPECT_EQ(first.desired_replicas, 15);  // ceil(50 / 3.5)
  EXPECT_TRUE(first.panic);
  EXPECT_EQ(first.reason,
            "concurrency 11 over target 3.5 per instance (burst: 50 in the "
            "last 2s) (panic): 3 → 15");
}

// Knative's KPA, the same inputs: the 6 s panic window averages the step in,
// so it takes several ticks (the reason `tidal` differs).
TEST(TidalSurgeTest, KpaAveragesTheStepOverItsPanicWindow) {
  Driver d("kpa", 1);
  Decision before = d.Settle(10, 120);
  ASSERT_EQ(before.desired_replicas, 3);
  EXPECT_EQ(d.Second(30).desired_replicas, 3);  // (5 x 10 + 30) / 6: no panic
  Decision first = d.Second(50);
  // Panic average (4 x 10 + 30 + 50) / 6 = 20: ceil(20 / 3.5) = 6.
  EXPECT_EQ(first.desired_replicas, 6);
  EXPECT_TRUE(first.panic);
  d.Second(50);
  Decision second = d.Second(50);  // (2 x 10 + 30 + 3 x 50) / 6 = 33.3
  EXPECT_EQ(second.desired_replicas, 10);
}

// A step that starts on a second boundary is a burst from its first second.
TEST(TidalSurgeTest, StepOnSecondBoundaryIsSizedAtTheNextTick) {
  Driver d("tidal", 1);
  d.Settle(10, 120);
  Decision first = d.Second(50);
  EXPECT_EQ(first.desired_replicas, 15);
  EXPECT_TRUE(first.panic);
}

// No scale-down while panicking: the load falls back at once, the count
// holds for a stable window after the last over-threshold second, then
// goes down (at most halving per tick, maxScaleDownRate 2).
TEST(TidalSurgeTest, NoScaleDownWhilePanickingAfterABurst) {
  Driver d("tidal", 1);
  d.Settle(10, 120);
  ASSERT_EQ(d.Second(50).desired_replicas, 15);
  d.ready_ = 15;
  Decision after;
  for (int i = 0; i < 55; ++i) {
    after = d.Second(10);
    ASSERT_EQ(after.desired_replicas, 15) << "second " << i;
    ASSERT_TRUE(after.panic) << "second " << i;
  }
  // Past the stable window since the burst: panic ends, the stable value
  // (mostly 10) decides.
  after = d.Settle(10, 10);
  EXPECT_FALSE(after.panic);
  EXPECT_LT(after.desired_replicas, 15);
  after = d.Settle(10, 60);
  EXPECT_EQ(after.desired_replicas, 3);
}

// A rise under the panic threshold is no burst: the windows decide, as in
// Knative.
TEST(TidalSurgeTest, RiseUnderThresholdIsNoBurst) {
  Driver d("tidal", 1);
  d.Settle(10, 120);
  // 15 needs 5 pods for 3 ready: 1.67 < 2.
  Decision d1 = d.Second(15);
  EXPECT_FALSE(d1.panic);
  EXPECT_EQ(d1.desired_replicas, 3);  // stable average still ~10.1
}

// One second of a burst that does not last: the count it raised holds
// (panic), it never drops below what the windows give.
TEST(TidalSurgeTest, SingleSecondSpikeHoldsItsCountWhilePanicking) {
  Driver d("tidal", 1);
  d.Settle(10, 120);
  // ceil(40 / 3.5) = 12 pods for 3 ready
  Decision spike = d.Second(40);
  EXPECT_EQ(spike.desired_replicas, 12);
  Decision next = d.Second(10);  // still within the 2 s peak
  EXPECT_EQ(next.desired_replicas, 12);
  Decision later = d.Second(10);  // out of the peak; panic holds the count
  EXPECT_EQ(later.desired_replicas, 12);
  EXPECT_TRUE(later.panic);
}

}  // namespace
}  // namespace tidal::scaler
