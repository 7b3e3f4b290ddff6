// CallLimiter: calls in flight per kind, per client and in total.

#include "api/call_limiter.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "absl/strings/match.h"

namespace tidal {
namespace {

ApiLimits Small() {
  ApiLimits l;
  l.max_applies = 3;
  l.max_applies_per_client = 2;
  l.max_reads = 0;  // no limit
  l.max_reads_per_client = 0;
  l.max_streams = 1;
  l.max_streams_per_client = 1;
  return l;
}

TEST(CallLimiterTest, PerClientThenTotalThenReleased) {
  CallLimiter limiter(Small());
  CallLimiter::Slot a1, a2, a3, b1, b2;
  ASSERT_TRUE(limiter.Acquire(CallLimiter::kApply, "a", &a1).ok());
  ASSERT_TRUE(limiter.Acquire(CallLimiter::kApply, "a", &a2).ok());
  absl::Status s = limiter.Acquire(CallLimiter::kApply, "a", &a3);
  EXPECT_TRUE(absl::IsResourceExhausted(s));
  EXPECT_EQ(s.message(),
            "too many apply calls in flight from this client (2, tidald "
            "--api-max-applies-per-client); retry in 1s");
  ASSERT_TRUE(limiter.Acquire(CallLimiter::kApply, "b", &b1).ok());
  s = limiter.Acquire(CallLimiter::kApply, "b", &b2);
  EXPECT_EQ(s.message(),
            "too many apply calls in flight (3, tidald --api-max-applies); "
            "retry in 1s");
  EXPECT_EQ(limiter.in_flight(CallLimiter::kApply), 3);
  EXPECT_EQ(limiter.refused(CallLimiter::kApply), 2);
  // A refused call holds nothing; a finished one frees its slot.
  a1 = CallLimiter::Slot();
  EXPECT_EQ(limiter.in_flight(CallLimiter::kApply), 2);
  EXPECT_TRUE(limiter.Acquire(CallLimiter::kApply, "a", &a3).ok());
}

TEST(CallLimiterTest, AcquiringIntoAHeldSlotReleasesItFirst) {
  CallLimiter limiter(Small());
  CallLimiter::Slot s;
  ASSERT_TRUE(limiter.Acquire(CallLimiter::kStream, "a", &s).ok());
  // The limit is 1: the held slot is given back before the new one is taken
  // (and not under the limiter's lock, which would deadlock).
  ASSERT_TRUE(limiter.Acquire(CallLimiter::kStream, "a", &s).ok());
  EXPECT_EQ(limiter.in_flight(CallLimiter::kStream), 1);
  s = CallLimiter::Slot();
  EXPECT_EQ(limiter.in_flight(CallLimiter::kStream), 0);
}

TEST(CallLimiterTest, KindsAreCountedApartAndZeroMeansNoLimit) {
  CallLimiter limiter(Small());
  std::vector<CallLimiter::Slot> reads(100);
  for (auto& r : reads) {
    ASSERT_TRUE(limiter.Acquire(CallLimiter::kRead, "a", &r).ok());
  }
  CallLimiter::Slot s1, s2, apply;
  ASSERT_TRUE(limiter.Acquire(CallLimiter::kStream, "a", &s1).ok());
  EXPECT_TRUE(absl::StrContains(
      limiter.Acquire(CallLimiter::kStream, "b", &s2).message(),
      "watch/logs stream calls in flight (1, tidald --api-max-streams)"));
  EXPECT_TRUE(limiter.Acquire(CallLimiter::kApply, "a", &apply).ok());
  EXPECT_EQ(limiter.in_flight(CallLimiter::kRead), 100);
  // Moved slots are released once.
  CallLimiter::Slot moved = std::move(s1);
  s1 = CallLimiter::Slot();
  EXPECT_EQ(limiter.in_flight(CallLimiter::kStream), 1);
  moved = CallLimiter::Slot();
  EXPECT_EQ(limiter.in_flight(CallLimiter::kStream), 0);
}

}  // namespace
}  // namespace tidal
