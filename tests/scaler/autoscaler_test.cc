// AppScaler: schedules (midnight, DST, overlaps), the predictive floor,
// determinism, reasons and persisted state.

#include "scaler/autoscaler.h"

#include <memory>
#include <random>
#include <string>

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"

namespace tidal::scaler {
namespace {

absl::Time At(const char* zone, int y, int mo, int d, int h, int mi) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(zone, &tz));
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), tz);
}

tidal::v1::ScalingSchedule* AddSchedule(tidal::v1::Scaling* s, const char* name,
                                        const char* cron, const char* zone,
                                        int64_t hours, int min) {
  auto* sc = s->add_schedules();
  sc->set_name(name);
  sc->set_cron(cron);
  sc->set_time_zone(zone);
  sc->set_duration_ms(hours * 3600 * 1000);
  sc->set_min_replicas(min);
  return sc;
}

int MinAt(const tidal::v1::Scaling& spec, absl::Time t) {
  auto s = AppScaler::Create(spec, t - absl::Hours(30));
  EXPECT_TRUE(s.ok()) << s.status();
  return (*s)->Decide(t).min_replicas;
}

TEST(ScheduleTest, AcrossMidnight) {
  tidal::v1::Scaling spec;
  spec.set_algorithm("kpa");
  AddSchedule(&spec, "night", "0 22 * * *", "Asia/Shanghai", 4, 20);
  EXPECT_EQ(MinAt(spec, At("Asia/Shanghai", 2024, 5, 6, 21, 59)), 0);
  EXPECT_EQ(MinAt(spec, At("Asia/Shanghai", 2024, 5, 6, 22, 0)), 20);
  EXPECT_EQ(MinAt(spec, At("Asia/Shanghai", 2024, 5, 6, 23, 30)), 20);
  EXPECT_EQ(MinAt(spec, At("Asia/Shanghai", 2024, 5, 7, 1, 59)), 20);
  EXPECT_EQ(MinAt(spec, At("Asia/Shanghai", 2024, 5, 7, 2, 0)), 0);
  // The desired count follows, with the schedule named.
  auto s = AppScaler::Create(spec, At("Asia/Shanghai", 2024, 5, 6, 12, 0));
  Decision d = (*s)->Decide(At("Asia/Shanghai", 2024, 5, 6, 23, 0));
  EXPECT_EQ(d.desired_replicas, 20);
  EXPECT_EQ(d.active_schedules, std::vector<std::string>{"night"});
  EXPECT_EQ(d.reason, "schedule night min 20: 0 → 20");
}

TEST(ScheduleTest, AcrossDstChange) {
  tidal::v1::Scaling spec;
  AddSchedule(&spec, "early", "30 1 * * *", "America/New_York", 2, 5);
  // 2024-03-10: clocks go from 02:00 EST to 03:00 EDT. The window opens at
  // 01:30 EST and lasts two real hours: until 04:30 EDT.
  EXPECT_EQ(MinAt(spec, At("America/New_York", 2024, 3, 10, 1, 29)), 0);
  EXPECT_EQ(MinAt(spec, At("America/New_York", 2024, 3, 10, 1, 31)), 5);
  EXPECT_EQ(MinAt(spec, At("America/New_York", 2024, 3, 10, 4, 29)), 5);
  EXPECT_EQ(MinAt(spec, At("America/New_York", 2024, 3, 10, 4, 31)), 0);
  // 2024-11-03: 01:30 happens twice; the schedule fires at the first one
  // and lasts two real hours: until 02:30 EST.
  EXPECT_EQ(MinAt(spec, At("America/New_York", 2024, 11, 3, 2, 29)), 5);
  EXPECT_EQ(MinAt(spec, At("America/New_York", 2024, 11, 3, 2, 31)), 0);
}

TEST(ScheduleTest, OverlappingTakeLargestMinimum) {
  tidal::v1::Scaling spec;
  spec.set_min_replicas(2);
  AddSchedule(&spec, "lunch", "0 12 * * *", "UTC", 2, 5);
  AddSchedule(&spec, "launch", "0 13 * * *", "UTC", 1, 20);
  auto s = AppScaler::Create(spec, At("UTC", 2024, 1, 1, 0, 0));
  EXPECT_EQ((*s)->Decide(At("UTC", 2024, 1, 1, 11, 0)).min_replicas, 2);
  EXPECT_EQ((*s)->Decide(At("UTC", 2024, 1, 1, 12, 30)).min_replicas, 5);
  Decision d = (*s)->Decide(At("UTC", 2024, 1, 1, 13, 30));
  EXPECT_EQ(d.min_replicas, 20);
  EXPECT_EQ(d.active_schedules, (std::vector<std::string>{"lunch", "launch"}));
  EXPECT_EQ((*s)->Decide(At("UTC", 2024, 1, 1, 14, 30)).min_replicas, 2);
}

TEST(PredictionTest, RaisesFloorAheadOfDailyPeak) {
  tidal::v1::Scaling spec;
  spec.mutable_predictive()->set_enabled(true);
  AppScalerOptions o;
  o.container_concurrency = 1;
  o.start_duration = absl::Seconds(30);
  const absl::Time day0 = At("UTC", 2024, 1, 1, 0, 0);
  auto s = AppScaler::Create(spec, day0, o);
  ASSERT_TRUE(s.ok());
  // Day 0: 10 concurrent requests from 12:00 to 13:00 UTC, nothing else.
  for (int sec = 0; sec < 86400; ++sec) {
    MetricSample m;
    m.time = day0 + absl::Seconds(sec);
    const bool peak = sec >= 12 * 3600 && sec < 13 * 3600;
    m.concurrency = peak ? 10 : 0;
    m.requests = peak ? 10 : 0;
    (*s)->Record(m);
  }
  const absl::Time day1 = day0 + absl::Hours(24);
  // Before the lookahead (start time 30 s + tick 1 s): no floor.
  EXPECT_EQ(
      (*s)->Decide(day1 + absl::Hours(12) - absl::Minutes(5)).min_replicas, 0);
  // 20 s ahead of the peak, with no traffic yet: the floor is up.
  Decision d = (*s)->Decide(day1 + absl::Hours(12) - absl::Seconds(20));
  // Sized for a wait target: the service time measured on day 0 is 1 s
  // (concurrency / rate), and the default target (start time + tick, 31 s)
  // is met by reacting to waiting requests: floor(10) + 1 slots.
  EXPECT_EQ(d.min_replicas, 11);
  EXPECT_EQ(d.desired_replicas, 11);
  EXPECT_NE(d.reason.find("predicted concurrency 10"), std::string::npos)
      << d.reason;
  // And it persists: a new scaler restored from the state predicts the same.
  auto s2 = AppScaler::Create(spec, day1, o);
  ASSERT_TRUE((*s2)->RestoreState((*s)->SaveState()).ok());
  EXPECT_EQ((*s2)->SaveState(), (*s)->SaveState());
  EXPECT_EQ(
      (*s2)->Decide(day1 + absl::Hours(12) - absl::Seconds(20)).min_replicas,
      11);
  EXPECT_FALSE((*s2)->RestoreState("garbage").ok());
}

std::vector<std::pair<int, std::string>> RunScaler(
    const tidal::v1::Scaling& spec) {
  const absl::Time t0 = At("UTC", 2024, 1, 1, 0, 0);
  AppScalerOptions o;
  o.container_concurrency = 4;
  auto s = AppScaler::Create(spec, t0, o);
  std::mt19937_64 rng(42);
  std::vector<std::pair<int, std::string>> out;
  int ready = 1;
  for (int sec = 0; sec < 3600; ++sec) {
    MetricSample m;
    m.time = t0 + absl::Seconds(sec);
    m.concurrency = (sec / 600) % 2 ? static_cast<double>(rng() % 40) : 0;
    m.requests = m.concurrency;
    (*s)->Record(m);
    if (sec % 2 == 0) {
      (*s)->SetInstances(ready, ready);
      Decision d = (*s)->Decide(t0 + absl::Seconds(sec + 1));
      out.push_back({d.desired_replicas, d.reason});
      ready = d.desired_replicas;
    }
  }
  return out;
}

TEST(DeterminismTest, SameInputsSameDecisions) {
  for (const char* algo : {"tidal", "kpa", "hpa", "keepalive"}) {
    tidal::v1::Scaling spec;
    spec.set_algorithm(algo);
    auto a = RunScaler(spec), b = RunScaler(spec);
    EXPECT_EQ(a, b) << algo;
    int changes = 0;
    for (size_t i = 1; i < a.size(); ++i)
      changes += a[i].first != a[i - 1].first;
    EXPECT_GT(changes, 2) << algo;
  }
}

TEST(AppScalerTest, ReasonNamesMetricTargetAndChange) {
  tidal::v1::Scaling spec;
  spec.set_algorithm("kpa");
  spec.set_target(10);
  const absl::Time t0 = At("UTC", 2024, 1, 1, 0, 0);
  auto s = AppScaler::Create(spec, t0);
  (*s)->SetInstances(10, 10);
  for (int i = 0; i < 60; ++i) {
    (*s)->Record({t0 + absl::Seconds(i), 95, 95});
  }
  Decision d = (*s)->Decide(t0 + absl::Seconds(60));
  EXPECT_EQ(d.desired_replicas, 14);  // ceil(95 / 7)
  EXPECT_EQ(d.reason, "concurrency 95 over target 7 per instance: 10 → 14");
  EXPECT_DOUBLE_EQ(d.value, 95);
  EXPECT_DOUBLE_EQ(d.target, 7);
  EXPECT_FALSE(d.panic);
}

TEST(AppScalerTest, InvalidSpecIsRejected) {
  tidal::v1::Scaling spec;
  spec.set_metric("latency");
  EXPECT_EQ(AppScaler::Create(spec, absl::UnixEpoch()).status().code(),
            absl::StatusCode::kInvalidArgument);
  tidal::v1::Scaling bad_cron;
  AddSchedule(&bad_cron, "x", "61 * * * *", "UTC", 1, 1);
  EXPECT_FALSE(AppScaler::Create(bad_cron, absl::UnixEpoch()).ok());
}

// KPA and tidal: when the samples stop coming because a gateway's figures
// are missing (MetricsSource::Incomplete), the scaler must not scale down
// on the windows emptying; with the figures known again (here: none, the
// load is gone) it does.
TEST(AppScalerTest, NoScaleDownWhileMetricsAreUnknown) {
  for (const char* algorithm : {"kpa", "tidal", "hpa"}) {
    SCOPED_TRACE(algorithm);
    tidal::v1::Scaling spec;
    spec.set_algorithm(algorithm);
    spec.set_metric("concurrency");
    spec.set_target(10);
    spec.set_min_replicas(0);
    spec.set_max_replicas(50);
    absl::Time t = absl::FromUnixSeconds(1700000000);
    auto s = AppScaler::Create(spec, t);
    ASSERT_TRUE(s.ok()) << s.status();
    AppScaler& a = **s;
    a.SetInstances(10, 10);
    for (int i = 0; i < 120; ++i) {
      MetricSample m;
      m.time = t;
      m.concurrency = 70;
      m.requests = 700;
      a.Record(m);
      t += absl::Seconds(1);
      Decision d = a.Decide(t);
      a.SetInstances(d.desired_replicas, d.desired_replicas);
    }
    const int32_t loaded = a.Decide(t).desired_replicas;
    ASSERT_GE(loaded, 8);
    a.SetInstances(loaded, loaded);
    // No samples for five minutes, the figures unknown: held.
    a.SetMetricsUnknown(true);
    for (int i = 0; i < 300; ++i) {
      t += absl::Seconds(1);
      Decision d = a.Decide(t);
      ASSERT_GE(d.desired_replicas, loaded)
          << "second " << i << ": " << d.reason;
    }
    // Known again, and idle: the count comes down.
    a.SetMetricsUnknown(false);
    int32_t last = loaded;
    for (int i = 0; i < 600; ++i) {
      t += absl::Seconds(1);
      MetricSample m;
      m.time = t - absl::Seconds(1);
      a.Record(m);
      last = a.Decide(t).desired_replicas;
      a.SetInstances(last, last);
    }
    EXPECT_LT(last, loaded);
  }
}

// Feeds `seconds` of concurrency `c` with the instances following the
// decisions (ready at once); returns the last decision.
Decision Feed(AppScaler& a, absl::Time* t, int seconds, double c) {
  Decision d;
  for (int i = 0; i < seconds; ++i) {
    MetricSample m;
    m.time = *t;
    m.concurrency = c;
    m.requests = c * 10;
    a.Record(m);
    *t += absl::Seconds(1);
    d = a.Decide(*t);
    a.SetInstances(d.desired_replicas, d.desired_replicas);
  }
  return d;
}

// A scaler for `algorithm` with target 10 per instance at 100% (kpa,
// hpa), created at kT0 with one ready instance.
const absl::Time kT0 = absl::FromUnixSeconds(1700000000);
tidal::v1::Scaling Spec10(const char* algorithm) {
  tidal::v1::Scaling spec;
  spec.set_algorithm(algorithm);
  spec.set_target(10);
  spec.set_target_utilization(100);
  return spec;
}
std::unique_ptr<AppScaler> New(const tidal::v1::Scaling& spec) {
  auto s = AppScaler::Create(spec, kT0);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return nullptr;
  (*s)->SetInstances(1, 1);
  return std::move(*s);
}

// algorithm kpa: with nothing recorded for a whole stable window (Knative's
// ErrNoData: the metrics pipeline is down, not the traffic) the result is
// invalid and the scale is held, never taken to zero.
TEST(AppScalerTest, KpaHoldsWhenTheWindowHasNoData) {
  auto s = New(Spec10("kpa"));
  ASSERT_NE(s, nullptr);
  AppScaler& a = *s;
  absl::Time t = kT0;
  const int32_t loaded = Feed(a, &t, 90, 40).desired_replicas;
  ASSERT_EQ(loaded, 4);
  for (int i = 0; i < 600; ++i) {
    t += absl::Seconds(1);
    Decision d = a.Decide(t);
    ASSERT_EQ(d.desired_replicas, loaded) << "second " << i << ": " << d.reason;
  }
  EXPECT_NE(a.Decide(t).reason.find("no concurrency data (held)"),
            std::string::npos)
      << a.Decide(t).reason;
  // Zeros recorded again (the instances report, the traffic is gone): down.
  EXPECT_LT(Feed(a, &t, 200, 0).desired_replicas, loaded);
}

// algorithm kpa: a spec change is applied without re-creating the scaler:
// the panic mode and the windows carry over, the new target applies at once.
TEST(AppScalerTest, KpaUpdateKeepsState) {
  tidal::v1::Scaling spec = Spec10("kpa");
  auto s = New(spec);
  ASSERT_NE(s, nullptr);
  AppScaler& a = *s;
  absl::Time t = kT0;
  Decision d = Feed(a, &t, 10, 100);
  ASSERT_TRUE(d.panic);
  const int32_t before = d.desired_replicas;
  spec.set_target(20);
  ASSERT_TRUE(a.Update(spec, AppScalerOptions()).ok());
  // Half the pods for the same load, but panic mode holds the count.
  d = Feed(a, &t, 1, 100);
  EXPECT_TRUE(d.panic);
  EXPECT_EQ(d.desired_replicas, before);
  EXPECT_EQ(d.target, 20);
  // Another algorithm needs a new scaler; nothing changes.
  spec.set_algorithm("hpa");
  EXPECT_EQ(a.Update(spec, AppScalerOptions()).code(),
            absl::StatusCode::kFailedPrecondition);
  spec.set_algorithm("kpa");
  spec.set_target(-1);
  EXPECT_EQ(a.Update(spec, AppScalerOptions()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.config().target, 20);
}

// algorithm kpa: an unreachable app scales down at once (no
// maxScaleDownRate, no scaleDownDelay).
TEST(AppScalerTest, KpaUnreachableScalesDownAtOnce) {
  tidal::v1::Scaling spec = Spec10("kpa");
  spec.set_scale_down_delay_ms(300000);
  auto s = New(spec);
  ASSERT_NE(s, nullptr);
  AppScaler& a = *s;
  absl::Time t = kT0;
  const int32_t loaded = Feed(a, &t, 120, 60).desired_replicas;
  ASSERT_EQ(loaded, 6);
  EXPECT_EQ(Feed(a, &t, 61, 10).desired_replicas, loaded);  // the delay
  a.SetReachable(false);
  EXPECT_EQ(Feed(a, &t, 1, 10).desired_replicas, 1);
}

// algorithm hpa: instances still starting are unready pods; on a scale-up
// they count at 0% (replica calculator), so 2 ready at twice the target
// with 2 more starting ask for 4, not 8.
TEST(AppScalerTest, HpaCountsStartingInstancesAtZeroOnScaleUp) {
  auto s = New(Spec10("hpa"));
  ASSERT_NE(s, nullptr);
  AppScaler& a = *s;
  absl::Time t = kT0;
  a.SetInstances(2, 4);
  Decision d;
  for (int i = 0; i < 15; ++i) {
    MetricSample m;
    m.time = t;
    m.concurrency = 40;  // 20 per ready instance
    a.Record(m);
    t += absl::Seconds(1);
  }
  d = a.Decide(t);
  EXPECT_EQ(d.desired_replicas, 4) << d.reason;
  // All four ready at the same load: 10 each, on target.
  a.SetInstances(4, 4);
  EXPECT_EQ(a.Decide(t).desired_replicas, 4);
}

// algorithm hpa: the first sync records the count it finds even when it
// has no metrics yet (recordInitialRecommendation comes before the metrics
// in reconcileAutoscaler), so the scale-down window runs from that sync,
// not from the first sync with metrics.
TEST(AppScalerTest, HpaRecordsTheCountAtItsFirstSyncWithoutMetrics) {
  auto s = New(Spec10("hpa"));
  ASSERT_NE(s, nullptr);
  AppScaler& a = *s;
  absl::Time t = kT0;
  a.SetInstances(10, 10);
  EXPECT_EQ(a.Decide(t).desired_replicas, 10);  // no data: held
  // 100 s later, 2 per instance against 10: 2 wanted, held at 10 until 300 s
  // after the first sync (400 s if counted from the first metrics).
  t += absl::Seconds(100);
  for (int i = 0; i < 205; ++i) {
    const Decision d = Feed(a, &t, 1, 20);
    if (t - kT0 < absl::Seconds(300)) {
      ASSERT_EQ(d.desired_replicas, 10) << (t - kT0) << ": " << d.reason;
    }
  }
  EXPECT_EQ(a.Decide(t).desired_replicas, 2) << a.Decide(t).reason;
}

// algorithm hpa with a behavior: a rescale by the bounds is a scale event
// too (reconcileAutoscaler stores every rescale), so it counts against the
// scale-down policy's period: 10 -> 8 by a lowered maxReplicas, then 1 pod
// per 60 s allows no more until the period has passed.
TEST(AppScalerTest, HpaCountsARescaleByTheBoundsAgainstThePolicies) {
  tidal::v1::Scaling spec = Spec10("hpa");
  spec.set_max_replicas(10);
  auto* down = spec.mutable_behavior()->mutable_scale_down();
  down->set_stabilization_window_seconds(0);
  auto* pol = down->add_policies();
  pol->set_type("Pods");
  pol->set_value(1);
  pol->set_period_seconds(60);
  auto s = New(spec);
  ASSERT_NE(s, nullptr);
  AppScaler& a = *s;
  absl::Time t = kT0;
  a.SetInstances(10, 10);
  ASSERT_EQ(Feed(a, &t, 15, 100).desired_replicas, 10);  // on target
  spec.set_max_replicas(8);
  ASSERT_TRUE(a.Update(spec, AppScalerOptions()).ok());
  Decision d = a.Decide(t);
  ASSERT_EQ(d.desired_replicas, 8) << d.reason;
  a.SetInstances(8, 8);
  // 2 per instance: 2 wanted. The bound's 2 pods count in the period.
  d = Feed(a, &t, 15, 16);
  EXPECT_EQ(d.desired_replicas, 8) << d.reason;
  d = Feed(a, &t, 50, 16);  // 65 s after the bound's rescale: one more pod
  EXPECT_EQ(d.desired_replicas, 7) << d.reason;
}

}  // namespace
}  // namespace tidal::scaler
