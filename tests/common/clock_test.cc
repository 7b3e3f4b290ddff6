#include "common/clock.h"

#include <gtest/gtest.h>

#include "fakes/fake_clock.h"

namespace tidal {
namespace {

TEST(FakeClockTest, SleepAdvancesWithoutWaiting) {
  testing::FakeClock clock;
  absl::Time start = clock.Now();
  clock.SleepFor(absl::Hours(1));
  EXPECT_EQ(clock.Now() - start, absl::Hours(1));
}

TEST(RealClockTest, MovesForward) {
  absl::Time a = RealClock::Get()->Now();
  absl::Time b = RealClock::Get()->Now();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace tidal
