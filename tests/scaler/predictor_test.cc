// Prediction: the learned state stays bounded, daily and weekly patterns are
// learned, the floor rises ahead of a predicted peak by the app's measured
// start time, and a predicted floor never overrides maxReplicas. Also the
// effective bounds with schedules (a schedule's maxReplicas 0 is no cap).

#include "scaler/predictor.h"

#include <random>
#include <string>

#include "absl/time/civil_time.h"
#include "gtest/gtest.h"
#include "scaler/autoscaler.h"

namespace tidal::scaler {
namespace {

absl::Time Utc(int y, int mo, int d, int h, int mi) {
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi),
                         absl::UTCTimeZone());
}

// 2024-01-01 is a Monday.
const absl::Time kMonday = Utc(2024, 1, 1, 0, 0);

// Feeds `days` days, one sample a second, of `load(day, second_of_day)`.
template <typename F>
void Feed(DailyPredictor* p, int days, F load) {
  for (int day = 0; day < days; ++day) {
    for (int sec = 0; sec < 86400; ++sec) {
      p->Add(kMonday + absl::Hours(24 * day) + absl::Seconds(sec),
             load(day, sec));
    }
  }
}

bool Noon(int sec) { return sec >= 12 * 3600 && sec < 13 * 3600; }

TEST(PredictorTest, StateStaysBoundedWhateverTheHistory) {
  // 288 daily slots + 168 hours of the week, each at most "%.4g" (at most 10
  // characters) plus a separator, and a short header: under 5.5 KB, however
  // long the history and however noisy the load.
  constexpr size_t kBound = 16 + (288 + 168) * 11;
  std::mt19937_64 rng(7);
  DailyPredictor short_p, long_p;
  auto noisy = [&rng](int, int) { return (rng() % 100000) / 997.0; };
  Feed(&short_p, 1, noisy);
  Feed(&long_p, 28, noisy);
  EXPECT_EQ(long_p.days_observed(), 27);
  EXPECT_LE(short_p.Serialize().size(), kBound);
  EXPECT_LE(long_p.Serialize().size(), kBound);
  // The state does not grow with the history: 28 days take as many slots as
  // one (up to the digits of each value).
  EXPECT_LE(long_p.Serialize().size(), short_p.Serialize().size() + 456 * 4);
  // And it round-trips.
  DailyPredictor back;
  ASSERT_TRUE(back.Parse(long_p.Serialize()).ok());
  EXPECT_EQ(back.Serialize(), long_p.Serialize());

  // The whole scaler state (idle histogram, predictor, start time) likewise.
  tidal::v1::Scaling spec;
  spec.mutable_predictive()->set_enabled(true);
  auto s = AppScaler::Create(spec, kMonday);
  ASSERT_TRUE(s.ok());
  for (int sec = 0; sec < 8 * 86400; ++sec) {
    const double c = sec % 600 < 30 ? (rng() % 1000) / 7.0 : 0;
    (*s)->Record({kMonday + absl::Seconds(sec), c, c});
  }
  EXPECT_LE((*s)->SaveState().size(), 8192u);
}

TEST(PredictorTest, LearnsTheDailyPattern) {
  DailyPredictor p;
  Feed(&p, 2, [](int, int sec) { return Noon(sec) ? 10.0 : 0.0; });
  const absl::Time day2 = kMonday + absl::Hours(48);
  EXPECT_NEAR(p.Predict(day2 + absl::Hours(12) + absl::Minutes(30)), 10, 1e-6);
  EXPECT_NEAR(p.Predict(day2 + absl::Hours(11) + absl::Minutes(54)), 0, 1e-6);
  // The slot before noon sees the peak within a 6-minute lookahead.
  EXPECT_NEAR(p.PredictMax(day2 + absl::Hours(11) + absl::Minutes(54),
                           absl::Minutes(6)),
              10, 1e-6);
}

TEST(PredictorTest, LearnsTheWeeklyPatternQuietWeekends) {
  // Weekdays peak at noon, weekends are quiet: two weeks.
  DailyPredictor p;
  Feed(&p, 14,
       [](int day, int sec) { return day % 7 < 5 && Noon(sec) ? 10.0 : 0.0; });
  const absl::Time week3 = kMonday + absl::Hours(24 * 14);
  const absl::Time saturday_noon = week3 + absl::Hours(24 * 5 + 12);
  const absl::Time monday_noon = week3 + absl::Hours(12) + absl::Minutes(30);
  // The daily average alone would predict 2.5 on Monday (after Saturday and
  // Sunday halved it twice) and more than 0 on Saturday.
  EXPECT_NEAR(p.Predict(monday_noon), 10, 1e-3);
  EXPECT_NEAR(p.Predict(saturday_noon), 0, 1e-6);
}

TEST(PredictorTest, LearnsAMondayOnlyPeak) {
  DailyPredictor p;
  Feed(&p, 14,
       [](int day, int sec) { return day % 7 == 0 && Noon(sec) ? 10.0 : 0.0; });
  const absl::Time week3 = kMonday + absl::Hours(24 * 14);
  // The daily average has decayed to 10 / 2^6 by Monday; the week says 10.
  EXPECT_NEAR(p.Predict(week3 + absl::Hours(12) + absl::Minutes(10)), 10, 1e-3);
  EXPECT_NEAR(p.Predict(week3 + absl::Hours(24 + 12) + absl::Minutes(10)), 0,
              1e-6);
  // Before a week is known, only the daily pattern counts.
  DailyPredictor young;
  Feed(&young, 3,
       [](int day, int sec) { return day == 0 && Noon(sec) ? 10.0 : 0.0; });
  EXPECT_NEAR(young.Predict(kMonday + absl::Hours(24 * 3 + 12)), 2.5, 1e-6);
}

// One day of traffic: 10 concurrent requests from 12:00 to 13:00 UTC.
std::unique_ptr<AppScaler> LearnedScaler(const tidal::v1::Scaling& spec,
                                         absl::Duration measured_start) {
  AppScalerOptions o;
  o.container_concurrency = 1;
  o.start_duration = absl::Seconds(1);
  auto s = AppScaler::Create(spec, kMonday, o);
  EXPECT_TRUE(s.ok()) << s.status();
  for (int sec = 0; sec < 86400; ++sec) {
    const double c = Noon(sec) ? 10 : 0;
    (*s)->Record({kMonday + absl::Seconds(sec), c, c});
  }
  // The smoothed measurement converges on what the instances take.
  if (measured_start > absl::Seconds(1)) {
    for (int i = 0; i < 60; ++i) (*s)->ObserveStartDuration(measured_start);
  }
  return std::move(*s);
}

tidal::v1::Scaling Predictive() {
  tidal::v1::Scaling spec;
  spec.mutable_predictive()->set_enabled(true);
  return spec;
}

TEST(PredictionTest, FloorRisesAheadByTheMeasuredStartTime) {
  const absl::Time noon = kMonday + absl::Hours(24 + 12);
  // Instances that take 40 s to start: the floor is up 35 s before the peak
  // (lookahead = 40 s + the 1 s tick), not yet 50 s before it.
  auto slow = LearnedScaler(Predictive(), absl::Seconds(40));
  EXPECT_EQ(slow->Decide(noon - absl::Seconds(50)).min_replicas, 0);
  Decision d = slow->Decide(noon - absl::Seconds(35));
  // Sized for a waiting time: the learned service time is 1 s and the
  // default target (the start time plus a tick) is met by the reaction to
  // waiting requests: floor(10) + 1.
  EXPECT_EQ(d.min_replicas, 11);
  EXPECT_EQ(d.desired_replicas, 11);
  // (the smoothed estimate settles a millisecond short of 40 s)
  EXPECT_NE(d.reason.find("predicted concurrency 10 within 40.999s"),
            std::string::npos)
      << d.reason;
  // Instances that start in 1 s: 35 s ahead is too early to warm them.
  auto fast = LearnedScaler(Predictive(), absl::Seconds(1));
  EXPECT_EQ(fast->Decide(noon - absl::Seconds(35)).min_replicas, 0);
  EXPECT_EQ(fast->Decide(noon - absl::Seconds(1)).min_replicas, 11);
}

TEST(PredictionTest, PredictedFloorNeverExceedsMaxReplicas) {
  tidal::v1::Scaling spec = Predictive();
  spec.set_max_replicas(5);
  auto s = LearnedScaler(spec, absl::Seconds(1));
  Decision d = s->Decide(kMonday + absl::Hours(24 + 12) - absl::Seconds(1));
  EXPECT_EQ(d.min_replicas, 5);
  EXPECT_EQ(d.max_replicas, 5);
  EXPECT_EQ(d.desired_replicas, 5);
}

tidal::v1::ScalingSchedule* AlwaysOn(tidal::v1::Scaling* s) {
  auto* sc = s->add_schedules();
  sc->set_name("always");
  sc->set_cron("* * * * *");
  sc->set_time_zone("UTC");
  sc->set_duration_ms(3600 * 1000);
  return sc;
}

TEST(BoundsTest, ScheduleMinimumRaisesTheMaximumAsDocumented) {
  tidal::v1::Scaling spec = Predictive();
  spec.set_max_replicas(5);
  AlwaysOn(&spec)->set_min_replicas(8);
  auto s = LearnedScaler(spec, absl::Seconds(1));
  Decision d = s->Decide(kMonday + absl::Hours(24 + 12) - absl::Seconds(1));
  EXPECT_EQ(d.min_replicas, 8);
  EXPECT_EQ(d.max_replicas, 8);  // the prediction (14) does not raise it
  EXPECT_EQ(d.desired_replicas, 8);
}

// 60 s at 35 concurrent requests with 4 ready (kpa, target 10 at 70%): 5.
Decision KpaUnderLoad(const tidal::v1::Scaling& base) {
  tidal::v1::Scaling spec = base;
  spec.set_algorithm("kpa");
  spec.set_target(10);
  auto s = AppScaler::Create(spec, kMonday);
  EXPECT_TRUE(s.ok()) << s.status();
  (*s)->SetInstances(4, 4);
  Decision d;
  for (int sec = 0; sec < 60; ++sec) {
    (*s)->Record({kMonday + absl::Seconds(sec), 35, 35});
    if (sec % 2 == 1)
      d = (*s)->Decide(kMonday + absl::Seconds(sec + 1) +
                       absl::Milliseconds(100));
  }
  return d;
}

TEST(BoundsTest, ScheduleMaxZeroIsNoCap) {
  tidal::v1::Scaling none;
  EXPECT_EQ(KpaUnderLoad(none).desired_replicas, 5);
  tidal::v1::Scaling zero;
  AlwaysOn(&zero)->set_max_replicas(0);
  Decision d = KpaUnderLoad(zero);
  EXPECT_EQ(d.desired_replicas, 5) << d.reason;  // used to force 0
  EXPECT_EQ(d.max_replicas, 0);                  // unbounded
  tidal::v1::Scaling three;
  AlwaysOn(&three)->set_max_replicas(3);
  EXPECT_EQ(KpaUnderLoad(three).desired_replicas, 3);
}

TEST(ConfigTest, TickRangeMatchesTheApi) {
  tidal::v1::Scaling spec;
  spec.set_tick_ms(60000);
  EXPECT_TRUE(ResolveConfig(spec).ok());
  spec.set_tick_ms(60001);
  EXPECT_FALSE(ResolveConfig(spec).ok());
  spec.set_tick_ms(99);
  EXPECT_FALSE(ResolveConfig(spec).ok());
  // Defaults (docs/spec.md): min 0, max 0 (unbounded), tick 1 s for tidal.
  auto c = ResolveConfig(tidal::v1::Scaling());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->min_replicas, 0);
  EXPECT_EQ(c->max_replicas, 0);
  EXPECT_EQ(c->tick, absl::Seconds(1));
  tidal::v1::Scaling ka;
  ka.set_algorithm("keepalive");
  EXPECT_TRUE(ResolveConfig(ka).ok());
}

}  // namespace
}  // namespace tidal::scaler
