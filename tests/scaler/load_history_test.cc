#include "scaler/load_history.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "fakes/fake_clock.h"

namespace tidal {
namespace {

constexpr int64_t kT0 = 1700000000;  // a whole minute (1700000000 % 60 == 20)

LoadPoint Point(double rps, int32_t desired, int32_t ready = -1,
                double p99 = 0) {
  LoadPoint p;
  p.rps = rps;
  p.concurrency = rps / 10;
  p.p99_ms = p99;
  p.desired = desired;
  p.ready = ready < 0 ? desired : ready;
  return p;
}

v1::HistoryRequest Window(int64_t seconds, int64_t step = 0,
                          int64_t after = 0) {
  v1::HistoryRequest req;
  req.set_window_seconds(seconds);
  req.set_step_seconds(step);
  req.set_after_unix(after);
  return req;
}

// A marker's reason is the scaler's without its trailing counts, and only
// those: "spec.replicas: 3" stays whole.
TEST(LoadHistoryTest, AMarkersReasonDropsOnlyTheTrailingCounts) {
  LoadHistory h;
  const std::vector<std::pair<int, std::string>> steps = {
      {1, ""},
      {3, "concurrency 34/10 (panic): 1 → 3"},
      {5, "spec.replicas: 5"},
      {4, "schedule peak: 4 instances: 5 → 4"},
      {2, "ratio 2: 1"}};
  for (size_t i = 0; i < steps.size(); ++i) {
    h.Record("web", "api", kT0 + static_cast<int64_t>(i),
             Point(1, steps[i].first), steps[i].second);
  }
  v1::AppHistory out;
  ASSERT_TRUE(h.Read("web", "api", Window(3600), &out));
  ASSERT_EQ(out.scale_events_size(), 4);
  EXPECT_EQ(out.scale_events(0).reason(), "concurrency 34/10 (panic)");
  EXPECT_EQ(out.scale_events(1).reason(), "spec.replicas: 5");
  EXPECT_EQ(out.scale_events(2).reason(), "schedule peak: 4 instances");
  EXPECT_EQ(out.scale_events(3).reason(), "ratio 2: 1");
}

TEST(LoadHistoryTest, SecondsReadBackInOrderAndRepeatsCostNothing) {
  LoadHistory h;
  for (int64_t t = 0; t < 600; ++t) {
    // 5 rps for the first 300 s, then 20 rps; one replica, then two.
    // The scaler's reason ends with the counts; the marker keeps its own.
    h.Record("web", "api", kT0 + t, t < 300 ? Point(5, 1) : Point(20, 2),
             "concurrency over target: 1 → 2");
  }
  v1::AppHistory out;
  ASSERT_TRUE(h.Read("web", "api", Window(3600), &out));
  EXPECT_EQ(out.step_seconds(), 1);
  EXPECT_EQ(out.start_unix(), kT0);  // no earlier than the first second
  ASSERT_EQ(out.rps_size(), 600);
  ASSERT_EQ(out.desired_replicas_size(), 600);
  EXPECT_EQ(out.rps(0), 5);
  EXPECT_EQ(out.rps(299), 5);
  EXPECT_EQ(out.rps(300), 20);
  EXPECT_EQ(out.concurrency(300), 2);
  EXPECT_EQ(out.desired_replicas(299), 1);
  EXPECT_EQ(out.desired_replicas(599), 2);
  // Two distinct points a second, plus at most the ten minutes' closes.
  EXPECT_LE(h.stored_points(), 2u + 12u);
  ASSERT_EQ(out.scale_events_size(), 1);
  EXPECT_EQ(out.scale_events(0).time_unix(), kT0 + 300);
  EXPECT_EQ(out.scale_events(0).from_replicas(), 1);
  EXPECT_EQ(out.scale_events(0).to_replicas(), 2);
  EXPECT_EQ(out.scale_events(0).reason(), "concurrency over target");
  EXPECT_FALSE(h.Read("web", "other", Window(3600), &out));
}

TEST(LoadHistoryTest, OneHourOfSecondsAndOneDayOfMinutesAreKept) {
  LoadHistory h;
  // Three hours of a load that changes every second (the worst case).
  const int64_t n = 3 * 3600;
  for (int64_t t = 0; t < n; ++t) {
    h.Record("web", "api", kT0 + t, Point(static_cast<double>(t % 7), 1), "");
  }
  v1::AppHistory fine;
  ASSERT_TRUE(h.Read("web", "api", Window(7200, 1), &fine));
  EXPECT_EQ(fine.rps_size(), 3600);  // an hour at most, whatever the window
  EXPECT_EQ(fine.start_unix(), kT0 + n - 3600);
  EXPECT_EQ(fine.rps(3599), static_cast<double>((n - 1) % 7));
  v1::AppHistory coarse;
  ASSERT_TRUE(h.Read("web", "api", Window(86400), &coarse));
  EXPECT_EQ(coarse.step_seconds(), 60);
  EXPECT_EQ(coarse.start_unix() % 60, 0);
  // Every closed minute since the first whole one: 179 of them (the last
  // minute is still open).
  EXPECT_GE(coarse.rps_size(), 178);
  EXPECT_LE(coarse.rps_size(), 180);
  // Stored: an hour of seconds plus the minutes.
  EXPECT_LE(h.stored_points(), 3601u + 181u);
}

TEST(LoadHistoryTest, AMinuteIsTheMeanLoadTheHighestP99AndTheLastReplicas) {
  LoadHistory h;
  const int64_t m0 = kT0 - kT0 % 60 + 60;  // a minute boundary
  for (int64_t t = 0; t < 60; ++t) {
    // 30 s at 10 rps, 30 s at 30 rps (mean 20); p99 peaks at 250 ms.
    h.Record("web", "api", m0 + t,
             Point(t < 30 ? 10 : 30, t < 45 ? 2 : 3, -1, t == 40 ? 250 : 20),
             "");
  }
  h.Record("web", "api", m0 + 60, Point(0, 3), "");  // closes the minute
  v1::AppHistory out;
  ASSERT_TRUE(h.Read("web", "api", Window(86400, 60), &out));
  ASSERT_EQ(out.rps_size(), 1);
  EXPECT_EQ(out.start_unix(), m0);
  EXPECT_DOUBLE_EQ(out.rps(0), 20);
  EXPECT_DOUBLE_EQ(out.concurrency(0), 2);
  EXPECT_DOUBLE_EQ(out.p99_ms(0), 250);
  EXPECT_EQ(out.desired_replicas(0), 3);
}

TEST(LoadHistoryTest, AfterGivesOnlyNewPointsAndRpsOnlyOneSeries) {
  LoadHistory h;
  for (int64_t t = 0; t < 100; ++t)
    h.Record("web", "api", kT0 + t, Point(t, 1), "");
  v1::HistoryRequest req = Window(3600, 1, kT0 + 97);
  req.set_rps_only(true);
  v1::AppHistory out;
  ASSERT_TRUE(h.Read("web", "api", req, &out));
  EXPECT_EQ(out.start_unix(), kT0 + 98);
  ASSERT_EQ(out.rps_size(), 2);
  EXPECT_EQ(out.rps(1), 99);
  EXPECT_EQ(out.concurrency_size(), 0);
  EXPECT_EQ(out.desired_replicas_size(), 0);
  // A second already recorded is not recorded again.
  h.Record("web", "api", kT0 + 50, Point(1000, 9), "");
  ASSERT_TRUE(h.Read("web", "api", req, &out));
  EXPECT_EQ(h.LastSecond("web", "api"), kT0 + 99);
}

TEST(LoadHistoryTest, RetainForgetsDeletedApps) {
  LoadHistory h;
  h.Record("web", "a", kT0, Point(1, 1), "");
  h.Record("web", "b", kT0, Point(1, 1), "");
  h.Retain({"web/b"});
  EXPECT_EQ(h.Keys(), std::vector<std::string>{"web/b"});
}

TEST(LoadHistoryTest, ScaleEventsAreBounded) {
  LoadHistory::Options o;
  o.max_scale_events = 4;
  LoadHistory h(o);
  for (int64_t t = 0; t < 20; ++t)
    h.Record("web", "api", kT0 + t, Point(0, static_cast<int32_t>(t)), "r");
  v1::AppHistory out;
  ASSERT_TRUE(h.Read("web", "api", Window(3600), &out));
  ASSERT_EQ(out.scale_events_size(), 4);
  EXPECT_EQ(out.scale_events(3).to_replicas(), 19);
}

// Samples the test sets second by second; Stats answers the p99 set.
class ScriptedMetrics : public MetricsSource {
 public:
  std::vector<MetricSample> Samples(const std::string& ns,
                                    const std::string& app, int64_t revision,
                                    absl::Time after) override {
    std::vector<MetricSample> out;
    for (const auto& [t, s] : seconds[app]) {
      if (absl::FromUnixSeconds(t) > after) out.push_back(s);
    }
    return out;
  }
  RequestStats Stats(const std::string& ns, const std::string& app,
                     int64_t revision, absl::Duration window) override {
    RequestStats st;
    st.p99_ms = p99;
    return st;
  }
  void Set(const std::string& app, int64_t t, double requests) {
    MetricSample s;
    s.time = absl::FromUnixSeconds(t);
    s.requests = requests;
    s.concurrency = requests / 4;
    seconds[app][t] = s;
  }
  std::map<std::string, std::map<int64_t, MetricSample>> seconds;
  double p99 = 0;
};

TEST(HistoryRecorderTest, RecordsEachCompletedSecondOfEveryApp) {
  testing::FakeClock clock(absl::FromUnixSeconds(kT0) +
                           absl::Milliseconds(200));
  ScriptedMetrics metrics;
  metrics.p99 = 42;
  LoadHistory history;
  std::vector<HistoryRecorder::AppNow> apps = {{"web", "api", 2, 1, ""},
                                               {"web", "idle", 0, 0, ""}};
  HistoryRecorder rec(
      &history, &metrics,
      [&](const auto& visit) {
        for (const auto& a : apps) visit(a);
      },
      &clock);
  metrics.Set("api", kT0 - 1, 8);
  rec.RunOnce();  // records kT0 - 1
  EXPECT_EQ(history.LastSecond("web", "api"), kT0 - 1);
  EXPECT_EQ(history.LastSecond("web", "idle"), kT0 - 1);
  // Ten seconds pass without a tick (a stall): the next one catches up.
  for (int64_t t = 0; t < 10; ++t) metrics.Set("api", kT0 + t, 12);
  apps[0].desired = 3;
  apps[0].reason = "rps 12 over target 5";
  clock.Advance(absl::Seconds(10));
  rec.RunOnce();
  v1::AppHistory out;
  ASSERT_TRUE(history.Read("web", "api", Window(3600), &out));
  ASSERT_EQ(out.rps_size(), 11);
  EXPECT_EQ(out.start_unix(), kT0 - 1);
  EXPECT_EQ(out.rps(0), 8);
  EXPECT_EQ(out.rps(10), 12);
  EXPECT_EQ(out.concurrency(10), 3);
  EXPECT_EQ(out.p99_ms(10), 42);
  EXPECT_EQ(out.ready_replicas(10), 1);
  ASSERT_EQ(out.scale_events_size(), 1);
  EXPECT_EQ(out.scale_events(0).reason(), "rps 12 over target 5");
  ASSERT_TRUE(history.Read("web", "idle", Window(3600), &out));
  EXPECT_EQ(out.rps(10), 0);
  EXPECT_EQ(out.p99_ms(10), 0);
  // A deleted app is forgotten at the next tick.
  apps.pop_back();
  clock.Advance(absl::Seconds(1));
  rec.RunOnce();
  EXPECT_FALSE(history.Read("web", "idle", Window(3600), &out));
}

}  // namespace
}  // namespace tidal
