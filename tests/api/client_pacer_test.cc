// ClientPacer (api/client_pacer.h): each client's apply bytes and the CPU of
// its refused applies paced to a rate after a burst, clients apart, the waits
// bounded and counted.
#include "api/client_pacer.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace tidal {
namespace {

ClientPacer::Options Small() {
  ClientPacer::Options o;
  o.bytes_per_second = 1000;
  o.burst = 2000;
  o.max_waiting = 2;
  o.max_wait = absl::Seconds(10);
  return o;
}

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(ClientPacerTest, TheBurstIsFreeThenEachByteWaitsItsShare) {
  ClientPacer p(Small());
  EXPECT_EQ(p.Charge("a", 1500, kT0), absl::ZeroDuration());
  EXPECT_EQ(p.Charge("a", 500, kT0), absl::ZeroDuration());  // the burst
  EXPECT_EQ(p.Charge("a", 500, kT0), absl::Milliseconds(500));
  EXPECT_EQ(p.Charge("a", 1000, kT0), absl::Milliseconds(1500));
  // Repaid at the rate: 1.5 s later the bucket is back at zero.
  EXPECT_EQ(p.Charge("a", 100, kT0 + absl::Milliseconds(1500)),
            absl::Milliseconds(100));
  // Refilled, but never beyond the burst.
  EXPECT_EQ(p.Charge("a", 2000, kT0 + absl::Seconds(100)),
            absl::ZeroDuration());
  EXPECT_EQ(p.Charge("a", 1, kT0 + absl::Seconds(100)), absl::Milliseconds(1));
}

TEST(ClientPacerTest, ClientsArePacedApart) {
  ClientPacer p(Small());
  EXPECT_EQ(p.Charge("a", 3000, kT0), absl::Seconds(1));
  EXPECT_EQ(p.Charge("b", 2000, kT0), absl::ZeroDuration());
}

TEST(ClientPacerTest, WaitsAreCappedAndZeroRateMeansNoPacing) {
  ClientPacer p(Small());
  EXPECT_EQ(p.Charge("a", 1'000'000, kT0), absl::Seconds(10));
  ClientPacer::Options off = Small();
  off.bytes_per_second = 0;
  ClientPacer none(off);
  EXPECT_EQ(none.Charge("a", 1'000'000, kT0), absl::ZeroDuration());
}

TEST(ClientPacerTest, AtMostMaxWaitingAreHeldAndEachIsCounted) {
  ClientPacer p(Small());
  {
    ClientPacer::Waiter none(&p, absl::ZeroDuration());
    EXPECT_FALSE(none.admitted());  // nothing to wait for
    ClientPacer::Waiter w1(&p, absl::Seconds(1));
    ClientPacer::Waiter w2(&p, absl::Milliseconds(500));
    ClientPacer::Waiter w3(&p, absl::Seconds(2));
    EXPECT_TRUE(w1.admitted());
    EXPECT_TRUE(w2.admitted());
    EXPECT_FALSE(w3.admitted());  // two wait already
  }
  ClientPacer::Waiter w4(&p, absl::Seconds(1));  // the others are done
  EXPECT_TRUE(w4.admitted());
  EXPECT_EQ(p.paced_total(), 3);
  EXPECT_DOUBLE_EQ(p.paced_seconds_total(), 2.5);
  EXPECT_EQ(p.not_held_total(), 1);
}

TEST(ClientPacerTest, RefusedApplysCpuIsPacedAfterItsBurst) {
  ClientPacer::Options o = Small();
  o.refused_cpu_per_second = 0.01;  // 10 ms a second
  o.refused_cpu_burst = 0.2;
  ClientPacer p(o);
  // 200 ms of refused work are free; the bytes are within their burst.
  p.ChargeRefusedCpu("a", absl::Milliseconds(150), kT0);
  EXPECT_EQ(p.Charge("a", 10, kT0), absl::ZeroDuration());
  p.ChargeRefusedCpu("a", absl::Milliseconds(80), kT0);
  // 30 ms in debt: 3 s at 10 ms a second, whatever the bytes.
  EXPECT_EQ(p.Charge("a", 10, kT0), absl::Seconds(3));
  EXPECT_EQ(p.Charge("b", 10, kT0), absl::ZeroDuration());  // apart
  // The longer of the two debts is waited.
  EXPECT_EQ(p.Charge("a", 4000, kT0 + absl::Seconds(1)), absl::Seconds(2));
  // Repaid, then never refilled beyond the burst.
  p.ChargeRefusedCpu("a", absl::Milliseconds(210), kT0 + absl::Seconds(100));
  EXPECT_EQ(p.Charge("a", 0, kT0 + absl::Seconds(100)), absl::Seconds(1));
  // Zero: no pacing by CPU.
  o.refused_cpu_per_second = 0;
  ClientPacer off(o);
  off.ChargeRefusedCpu("a", absl::Seconds(100), kT0);
  EXPECT_EQ(off.Charge("a", 10, kT0), absl::ZeroDuration());
}

TEST(ClientPacerTest, ClientsWhoseBucketFilledAgainAreForgotten) {
  ClientPacer p(Small());
  for (int i = 0; i < 255; ++i) p.Charge(absl::StrCat("c", i), 1500, kT0);
  EXPECT_EQ(p.clients(), 255u);
  // 1.5 s later every bucket is full again: the 256th charge sweeps them.
  p.Charge("last", 3000, kT0 + absl::Milliseconds(1500));
  EXPECT_EQ(p.clients(), 1u);  // "last" is in debt, kept
}

}  // namespace
}  // namespace tidal
