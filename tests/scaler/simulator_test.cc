// The simulator on a tiny trace whose results are computed by hand.

#include "scaler/simulator.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tidal::scaler {
namespace {

TEST(SimulatorTest, KnativeOnTwoRequests) {
  // One app, requests at 10 s and 200 s, 1 s each; 1 s start delay; one
  // request per instance (target 1 x 70%). Initial scale 1, ready at 0.
  // - 0..102 s: the instance stays: the request at 10 s keeps the 60 s
  //   stable average above 0 until 72 s, then the 30 s grace period.
  // - 200 s: no instance: a cold start. The activator's report (1 waiting)
  //   asks ceil(1 / 0.7) = 2 pods (panic: 2 >= 2 x 1). Ready at 201 s: the
  //   request waits 1 s.
  // - Panic holds 2 until 262 s (a stable window after 200 s). The average
  //   is 0 by then (no traffic after 202 s) but the scale-down rate 2 allows
  //   only 2 -> 1; at 264 s the autoscaler says 0, the revision turns
  //   inactive and stays at 1 for the 30 s grace period: 0 at 294 s.
  // Instance-seconds: 102 + 2 x 62 + 32 = 258.
  Trace t;
  t.duration_s = 300;
  t.apps.push_back({"a", {{10.0, 1.0}, {200.0, 1.0}}});
  SimOptions o;
  o.scaling.set_algorithm("kpa");
  o.model.concurrency = 1;
  o.model.start_delay = absl::Seconds(1);
  auto r = Simulate(t, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->all.requests, 2);
  EXPECT_EQ(r->all.cold_starts, 1);
  EXPECT_EQ(r->all.waited, 1);
  EXPECT_EQ(r->all.dropped, 0);
  EXPECT_NEAR(r->all.instance_seconds, 258, 1e-6);
  EXPECT_NEAR(r->all.p50_wait_s, 0, 1e-6);
  EXPECT_NEAR(r->all.p99_wait_s, 1.0, 1e-4);
  EXPECT_EQ(r->peak_replicas, 2);
  ASSERT_EQ(r->scale_events, 4);
  EXPECT_NEAR(r->events[0].time_s, 102, 1e-9);
  EXPECT_EQ(r->events[0].to, 0);
  EXPECT_NEAR(r->events[1].time_s, 200, 1e-9);
  EXPECT_EQ(r->events[1].to, 2);
  EXPECT_NEAR(r->events[2].time_s, 262, 1e-9);
  EXPECT_EQ(r->events[2].to, 1);
  EXPECT_NEAR(r->events[3].time_s, 294, 1e-9);
  EXPECT_EQ(r->events[3].to, 0);
  // Sparse apps (< 1,440 a day) are this one.
  EXPECT_EQ(r->sparse.apps, 1);
}

TEST(SimulatorTest, HpaNeverScalesToZeroAndDropsAfterTimeout) {
  // HPA keeps 1 instance; three 100 s requests at once on a 1-per-instance
  // app with maxReplicas 1 and a 50 s timeout: one is served, two wait and
  // are dropped at 50 s.
  Trace t;
  t.duration_s = 120;
  t.apps.push_back({"a", {{1.0, 100.0}, {1.0, 100.0}, {1.0, 100.0}}});
  SimOptions o;
  o.scaling.set_algorithm("hpa");
  o.scaling.set_max_replicas(1);
  o.model.request_timeout = absl::Seconds(50);
  auto r = Simulate(t, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->all.cold_starts, 0);
  EXPECT_EQ(r->all.dropped, 2);
  EXPECT_NEAR(r->all.instance_seconds, 120, 1e-6);
  EXPECT_EQ(r->peak_replicas, 1);
}

TEST(SimulatorTest, InstancesFillInOrderSoAScaleDownStopsAnIdleOne) {
  // Two ready instances of 2 slots, two 200 s requests at 1 s, min 1, and
  // a KPA target of 2 per instance at 100%: KPA scales 2 -> 1 at some time
  // T (62 s: its stable window). Both requests went to the oldest instance
  // (the gateway fills in order), so the newest is idle and stopped at T:
  // 300 + T instance-seconds. Spread one per instance, the scale-down would
  // drain a busy one until 201 s (300 + 201).
  Trace t;
  t.duration_s = 300;
  t.apps.push_back({"a", {{1.0, 200.0}, {1.0, 200.0}}});
  SimOptions o;
  o.scaling.set_algorithm("kpa");
  o.scaling.set_min_replicas(1);
  o.scaling.set_target(2);
  o.scaling.set_target_utilization(100);
  o.model.concurrency = 2;
  o.initial_instances = 2;
  auto r = Simulate(t, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->all.waited, 0);
  ASSERT_EQ(r->scale_events, 1);
  EXPECT_EQ(r->events[0].from, 2);
  EXPECT_EQ(r->events[0].to, 1);
  EXPECT_LT(r->events[0].time_s, 200);
  EXPECT_NEAR(r->all.instance_seconds, 300 + r->events[0].time_s, 1e-6);
}

TEST(SimulatorTest, SvgTitleIsEscaped) {
  std::vector<SeriesPoint> series(3, SeriesPoint{2, 1, 1});
  const std::string svg = RenderSvg(series, "a<b> & \"c\" 'd'");
  EXPECT_NE(svg.find(">a&lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;</text>"),
            std::string::npos)
      << svg;
  EXPECT_EQ(svg.find("a<b>"), std::string::npos);
}

}  // namespace
}  // namespace tidal::scaler
