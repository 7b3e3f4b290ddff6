#include "controller/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fakes/fake_clock.h"

namespace tidal {
namespace {

TEST(WorkQueueTest, DeduplicatesQueuedKeys) {
  WorkQueue q;
  q.Add("a");
  q.Add("a");
  q.Add("b");
  EXPECT_EQ(q.Len(), 2u);
  EXPECT_EQ(*q.Get(), "a");
  EXPECT_EQ(*q.Get(), "b");
}

TEST(WorkQueueTest, KeyAddedWhileProcessingComesBackAfterDone) {
  WorkQueue q;
  q.Add("a");
  auto k = q.Get();
  ASSERT_EQ(*k, "a");
  q.Add("a");
  EXPECT_EQ(q.Len(), 0u);  // not handed out while processing
  q.Done("a");
  EXPECT_EQ(q.Len(), 1u);
  EXPECT_EQ(*q.Get(), "a");
}

TEST(WorkQueueTest, NeverTwoWorkersOnOneKey) {
  WorkQueue q;
  std::atomic<int> active{0};
  std::atomic<bool> overlap{false};
  std::atomic<int> processed{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < 4; ++i) {
    workers.emplace_back([&] {
      while (auto k = q.Get()) {
        if (active.fetch_add(1) != 0) overlap = true;
        std::this_thread::yield();
        active.fetch_sub(1);
        processed++;
        q.Done(*k);
      }
    });
  }
  for (int i = 0; i < 2000; ++i) q.Add("same");
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (q.Len() > 0 && absl::Now() < deadline) std::this_thread::yield();
  q.ShutDown();
  for (auto& w : workers) w.join();
  EXPECT_FALSE(overlap);
  EXPECT_GE(processed.load(), 1);
}

TEST(WorkQueueTest, AddAfterWaitsAndEarlierDelayWins) {
  WorkQueue q;
  absl::Time start = absl::Now();
  q.AddAfter("late", absl::Seconds(5));
  q.AddAfter("soon", absl::Milliseconds(30));
  auto k = q.Get();
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(*k, "soon");
  absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(30));
  EXPECT_LT(waited, absl::Seconds(4));
}

TEST(WorkQueueTest, RateLimitedBackoffGrowsAndForgetResets) {
  WorkQueue::Options o;
  o.base_delay = absl::Milliseconds(10);
  WorkQueue q(o);
  q.AddRateLimited("k");
  q.AddRateLimited("k");
  q.AddRateLimited("k");
  EXPECT_EQ(q.Failures("k"), 3);
  q.Forget("k");
  EXPECT_EQ(q.Failures("k"), 0);
  // After Forget the next retry is back at the base delay.
  EXPECT_EQ(q.AddRateLimited("k"), absl::Milliseconds(10));
  // And a retried key comes out of Get no sooner than its delay (a fresh
  // queue: the retries above are still pending in this one).
  WorkQueue fresh(o);
  absl::Time start = absl::Now();
  fresh.AddRateLimited("k");
  ASSERT_EQ(*fresh.Get(), "k");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(10));
}

TEST(WorkQueueTest, BackoffDoublesPerKeyUpToTheCap) {
  WorkQueue::Options o;
  o.base_delay = absl::Milliseconds(5);
  o.max_delay = absl::Milliseconds(100);
  o.retry_burst = 1000;  // the bucket never binds here
  WorkQueue q(o);
  std::vector<absl::Duration> got;
  for (int i = 0; i < 7; ++i) got.push_back(q.AddRateLimited("k"));
  std::vector<absl::Duration> want = {
      absl::Milliseconds(5),  absl::Milliseconds(10), absl::Milliseconds(20),
      absl::Milliseconds(40), absl::Milliseconds(80), absl::Milliseconds(100),
      absl::Milliseconds(100)};
  EXPECT_EQ(got, want);
  // Another key has its own count.
  EXPECT_EQ(q.AddRateLimited("other"), absl::Milliseconds(5));
  q.Forget("k");
  EXPECT_EQ(q.AddRateLimited("k"), absl::Milliseconds(5));
}

TEST(WorkQueueTest, OverallTokenBucketSpacesRetriesOnceTheBurstIsSpent) {
  WorkQueue::Options o;
  o.base_delay = absl::Milliseconds(1);
  o.retry_qps = 10;  // one retry every 100 ms once the burst is spent
  o.retry_burst = 3;
  testing::FakeClock clock;
  WorkQueue q(o, &clock);
  // Fresh keys (per-key delay 1 ms): the first three ride the burst.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(q.AddRateLimited(absl::StrCat("burst", i)),
              absl::Milliseconds(1));
  }
  // Then each further retry waits for its own slot, 100 ms after the last
  // (the clock stands still: exactly).
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(q.AddRateLimited(absl::StrCat("slot", i)),
              absl::Milliseconds(100) * (i + 1))
        << i;
  }
  // A second later the bucket has refilled: the burst again.
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(q.AddRateLimited("later"), absl::Milliseconds(1));
}

TEST(WorkQueueTest, DelayedKeysFollowTheInjectedClock) {
  testing::FakeClock clock;
  WorkQueue q(WorkQueue::Options(), &clock);
  q.AddAfter("late", absl::Hours(1));
  q.AddAfter("soon", absl::Minutes(1));
  std::atomic<int> got{0};
  std::string first;
  std::thread t([&] {
    auto k = q.Get();
    if (k) first = *k;
    got = 1;
  });
  // No key is due while the fake clock stands still, however long the wall
  // clock runs: nothing comes out (checked against the wall clock only to
  // give Get several polls of the fake clock).
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(got.load(), 0);
  clock.Advance(absl::Minutes(1));
  t.join();
  EXPECT_EQ(first, "soon");
  EXPECT_EQ(q.Len(), 0u);
  clock.Advance(absl::Hours(1));
  EXPECT_EQ(*q.Get(), "late");
}

TEST(WorkQueueTest, ShutDownUnblocksGet) {
  WorkQueue q;
  std::thread t([&] { EXPECT_FALSE(q.Get().has_value()); });
  q.ShutDown();
  t.join();
}

// A key added again while a worker held it, when the queue shuts down
// before the worker is done: after Resume, adding it must queue it (the
// controller's restart after a stop lost every app this way).
TEST(WorkQueueTest, KeyDirtyAtShutDownIsQueuedAgainAfterResume) {
  WorkQueue q;
  q.Add("a");
  ASSERT_EQ(*q.Get(), "a");
  q.Add("a");  // changed while processed
  q.ShutDown();
  q.Done("a");
  EXPECT_EQ(q.Len(), 0u);
  q.Resume();
  q.Add("a");
  EXPECT_EQ(q.Len(), 1u);
  EXPECT_EQ(*q.Get(), "a");
}

}  // namespace
}  // namespace tidal
