#pragma once

// Eventually: the tests' one way to wait for something another thread or
// process does. Polls a condition until it holds or a deadline passes (no
// fixed sleeps standing in for "long enough").

#include <algorithm>
#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tidal::testing {

// How long Eventually waits unless told: generous, since a passing test
// never waits this long and a loaded CI machine is slow.
inline constexpr absl::Duration kEventuallyTimeout = absl::Seconds(20);

// Calls `cond` until it returns true or `timeout` passes; returns its last
// answer (it is asked once more at the deadline). Polls every millisecond
// at first, backing off to every 5 ms, so a quick condition is seen at once
// and a slow one (a process, an HTTP round trip) is not hammered.
inline bool Eventually(const std::function<bool()>& cond,
                       absl::Duration timeout = kEventuallyTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration poll = absl::Milliseconds(1);
  while (absl::Now() < deadline) {
    if (cond()) return true;
    absl::SleepFor(poll);
    poll = std::min(poll * 2, absl::Milliseconds(5));
  }
  return cond();
}

}  // namespace tidal::testing
