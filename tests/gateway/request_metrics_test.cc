// TrafficMetrics on hand-made timelines (no clock, no network).

#include "gateway/request_metrics.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tidal::gateway {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kMs = 1'000'000;
const int64_t kT0 = int64_t{1'700'000'000} * kSec;

TEST(TrafficMetricsTest, ConcurrencyIsTimeWeightedPerSecond) {
  TrafficMetrics m(2, kT0);
  // Second 0: one request for the whole second, one for its second half.
  m.Start(0, kT0);
  m.Start(1, kT0 + 500 * kMs);
  m.Finish(1, kT0 + 500 * kMs, kT0 + kSec, 200);
  m.Tick(absl::FromUnixNanos(kT0), kT0 + kSec);
  // Second 1: the long request ends at 1.25 s; nothing else.
  m.Finish(0, kT0, kT0 + 1250 * kMs, 200);
  m.Tick(absl::FromUnixNanos(kT0 + kSec), kT0 + 2 * kSec);
  // Second 2: idle.
  m.Tick(absl::FromUnixNanos(kT0 + 2 * kSec), kT0 + 3 * kSec);

  auto s = m.Samples(absl::InfinitePast());
  ASSERT_EQ(s.size(), 3u);
  EXPECT_NEAR(s[0].concurrency, 1.5, 1e-9);
  EXPECT_EQ(s[0].requests, 2);
  EXPECT_NEAR(s[1].concurrency, 0.25, 1e-9);
  EXPECT_EQ(s[1].requests, 0);
  EXPECT_EQ(s[2].concurrency, 0);
  EXPECT_EQ(s[2].time, absl::FromUnixNanos(kT0 + 2 * kSec));
  EXPECT_EQ(m.Samples(absl::FromUnixNanos(kT0)).size(), 2u);
}

TEST(TrafficMetricsTest, AnAppWithoutTrafficHoldsNothing) {
  TrafficMetrics m(4, kT0);
  for (int sec = 0; sec < 10; ++sec) {
    m.Tick(absl::FromUnixNanos(kT0 + sec * kSec), kT0 + (sec + 1) * kSec);
  }
  EXPECT_EQ(m.stored_for_test(), 0u);
  auto s = m.Samples(absl::InfinitePast());
  ASSERT_EQ(s.size(), 10u);
  for (const auto& x : s) EXPECT_EQ(x.concurrency, 0);
  RequestStats st = m.Stats(absl::Minutes(1), kT0 + 10 * kSec);
  EXPECT_EQ(st.requests, 0);
  EXPECT_EQ(m.Read(kT0 + 10 * kSec).started, 0u);
}

TEST(TrafficMetricsTest, IdleSecondsCostNoMemoryButStillReadAsZeros) {
  TrafficMetrics m(1, kT0);
  // 10 requests in second 0, then 20 idle minutes.
  for (int i = 0; i < 10; ++i) {
    m.Start(0, kT0 + i * 10 * kMs);
    m.Finish(0, kT0 + i * 10 * kMs, kT0 + i * 10 * kMs + kMs, 200);
  }
  for (int sec = 0; sec < 1200; ++sec) {
    m.Tick(absl::FromUnixNanos(kT0 + sec * kSec), kT0 + (sec + 1) * kSec);
  }
  EXPECT_LE(m.stored_for_test(), 2u);  // one snapshot (+ no samples)
  // The last 15 minutes of samples are all there, as zeros.
  auto s = m.Samples(absl::InfinitePast());
  ASSERT_EQ(s.size(), 900u);
  for (const auto& x : s) EXPECT_EQ(x.requests, 0);
  EXPECT_EQ(s.back().time, absl::FromUnixNanos(kT0 + 1199 * kSec));
  // A reader that saw second 1195 gets the four after it.
  EXPECT_EQ(m.Samples(absl::FromUnixNanos(kT0 + 1195 * kSec)).size(), 4u);
  // Traffic again: a 60 s window counts only it, over the full window.
  m.Start(0, kT0 + 1200 * kSec);
  m.Finish(0, kT0 + 1200 * kSec, kT0 + 1200 * kSec + kMs, 200);
  m.Tick(absl::FromUnixNanos(kT0 + 1200 * kSec), kT0 + 1201 * kSec);
  RequestStats st = m.Stats(absl::Seconds(60), kT0 + 1201 * kSec);
  EXPECT_EQ(st.requests, 1);
  EXPECT_NEAR(st.rps, 1.0 / 60, 1e-6);
  EXPECT_EQ(m.Samples(absl::FromUnixNanos(kT0 + 1199 * kSec)).back().requests,
            1);
}

TEST(TrafficMetricsTest, StatsCountClassesAndPercentiles) {
  TrafficMetrics m(1, kT0);
  // 100 requests with latencies 1..100 ms over 10 s.
  for (int i = 1; i <= 100; ++i) {
    int64_t start = kT0 + (i - 1) * 100 * kMs;
    m.Start(0, start);
    m.Finish(0, start, start + i * kMs,
             i % 10 == 0 ? 503 : (i % 10 == 1 ? 404 : 200));
  }
  RequestStats st = m.Stats(absl::Minutes(1), kT0 + 10 * kSec);
  EXPECT_EQ(st.requests, 100);
  EXPECT_EQ(st.responses_5xx, 10);
  EXPECT_EQ(st.responses_4xx, 10);
  EXPECT_EQ(st.responses_2xx, 80);
  EXPECT_NEAR(st.p50_ms, 50, 50 * 0.1);
  EXPECT_NEAR(st.p90_ms, 90, 90 * 0.1);
  EXPECT_NEAR(st.p99_ms, 99, 99 * 0.1);
  EXPECT_NEAR(st.rps, 10, 1e-9);
  // Average concurrency: sum of latencies (5.05 s) over 10 s.
  EXPECT_NEAR(st.concurrency, 0.505, 1e-6);
}

TEST(TrafficMetricsTest, StatsWindowUsesSnapshots) {
  TrafficMetrics m(1, kT0);
  for (int sec = 0; sec < 20; ++sec) {
    int64_t base = kT0 + sec * kSec;
    // 1 request per second for the first 10 s, 5 per second after.
    int n = sec < 10 ? 1 : 5;
    for (int i = 0; i < n; ++i) {
      m.Start(0, base + i * kMs);
      m.Finish(0, base + i * kMs, base + i * kMs + 10 * kMs, 200);
    }
    m.Tick(absl::FromUnixNanos(base), base + kSec);
  }
  RequestStats last5 = m.Stats(absl::Seconds(5), kT0 + 20 * kSec);
  EXPECT_EQ(last5.requests, 25);
  EXPECT_NEAR(last5.rps, 5, 1e-9);
  RequestStats all = m.Stats(absl::Minutes(5), kT0 + 20 * kSec);
  EXPECT_EQ(all.requests, 60);
}

// An app idle since it was made, then busy: the rate is over the window
// (tidalctl top apps --window), not over the app's age.
TEST(TrafficMetricsTest, StatsOfAnAppIdleSinceItsCreationCountTheWindowOnly) {
  TrafficMetrics m(1, kT0);
  for (int sec = 0; sec < 63; ++sec) {
    int64_t base = kT0 + sec * kSec;
    for (int i = 0; sec >= 60 && i < 10; ++i) {
      m.Start(0, base + i * kMs);
      m.Finish(0, base + i * kMs, base + i * kMs + 10 * kMs, 200);
    }
    m.Tick(absl::FromUnixNanos(base), base + kSec);
  }
  RequestStats st = m.Stats(absl::Seconds(10), kT0 + 63 * kSec);
  EXPECT_EQ(st.requests, 30);
  EXPECT_NEAR(st.rps, 3, 1e-9);
  // A window longer than the app's life: over the life.
  st = m.Stats(absl::Seconds(120), kT0 + 63 * kSec);
  EXPECT_EQ(st.requests, 30);
  EXPECT_NEAR(st.rps, 30.0 / 63, 1e-9);
}

// An app made a moment ago: its rate is over at least a second, so one
// request 50 ms after its creation reads as 1 request/s (not 10).
TEST(TrafficMetricsTest, StatsOfAnAppYoungerThanASecondAreOverASecond) {
  TrafficMetrics m(1, kT0);
  m.Start(0, kT0 + 50 * kMs);
  m.Finish(0, kT0 + 50 * kMs, kT0 + 90 * kMs, 200);
  RequestStats st = m.Stats(absl::Seconds(60), kT0 + 100 * kMs);
  EXPECT_EQ(st.requests, 1);
  EXPECT_NEAR(st.rps, 1, 1e-9);
  EXPECT_NEAR(st.concurrency, 0.04, 1e-9);
}

TEST(TrafficMetricsTest, ShardsRecordConcurrently) {
  TrafficMetrics m(4, kT0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < 100000; ++i) {
        int64_t start = kT0 + i * 1000;
        m.Start(t, start);
        m.Finish(t, start, start + 500, 200);
      }
    });
  }
  for (int i = 0; i < 1000; ++i) {
    Totals t = m.Read(kT0 + 200 * kMs);
    ASSERT_GE(t.in_flight, 0);
    ASSERT_LE(t.in_flight, 4);
  }
  for (auto& t : threads) t.join();
  Totals t = m.Read(kT0 + kSec);
  EXPECT_EQ(t.started, 400000u);
  EXPECT_EQ(t.classes[1], 400000u);
  EXPECT_EQ(t.in_flight, 0);
  EXPECT_NEAR(t.area, 400000 * 500e-9, 1e-6);
}

TEST(BucketsTest, BoundsAreMonotoneAndBucketForMatches) {
  for (int i = 1; i < kFiniteBuckets; ++i)
    EXPECT_GT(BucketBoundSeconds(i), BucketBoundSeconds(i - 1));
  EXPECT_EQ(BucketFor(50'000), 0);
  EXPECT_EQ(BucketFor(100'000), 0);
  EXPECT_EQ(BucketFor(200'000), 4);
  EXPECT_EQ(BucketFor(int64_t{1000} * kSec), kFiniteBuckets);
  for (int64_t ns : {123'456, 9'999'999, 1'000'000'000}) {
    int b = BucketFor(ns);
    EXPECT_LE(ns / 1e9, BucketBoundSeconds(b) + 1e-15);
    if (b > 0) {
      EXPECT_GT(ns / 1e9, BucketBoundSeconds(b - 1));
    }
  }
}

}  // namespace
}  // namespace tidal::gateway
