#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace tidal {

// Time source injected into every component that reads the time or waits, so
// tests and the simulator can drive time by hand. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Sleeps for `d` of this clock's time.
  virtual void SleepFor(absl::Duration d) = 0;
};

// The wall clock. Thread-safe; a process-wide instance.
class RealClock : public Clock {
 public:
  static RealClock* Get();
  absl::Time Now() const override { return absl::Now(); }
  void SleepFor(absl::Duration d) override { absl::SleepFor(d); }
};

}  // namespace tidal
