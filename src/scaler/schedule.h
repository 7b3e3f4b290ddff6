#pragma once

// ScheduleTracker: which scaling schedules are active at a time, and the
// min/max they impose (overlapping schedules: the largest minimum; the
// smallest maximum). A schedule is active from each cron firing (in its time
// zone) for its duration, so windows cross midnight and follow DST. Caches the
// next change per schedule, so a tick costs a comparison. Not thread-safe:
// owned by one AppScaler.

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "scaler/config.h"

namespace tidal::scaler {

class ScheduleTracker {
 public:
  explicit ScheduleTracker(const std::vector<ScheduleSpec>* schedules);

  struct Bounds {
    int32_t min_replicas = -1;  // -1: no active schedule sets one
    int32_t max_replicas = -1;
    std::vector<std::string> active;  // names, in spec order
  };
  // Times must not go backwards by more than a schedule's duration.
  const Bounds& At(absl::Time now);

 private:
  struct State {
    bool active = false;
    absl::Time valid_from =
        absl::InfiniteFuture();  // cached state holds in [from, until)
    absl::Time valid_until = absl::InfinitePast();
  };
  const std::vector<ScheduleSpec>* schedules_;
  std::vector<State> states_;
  Bounds bounds_;
};

}  // namespace tidal::scaler
