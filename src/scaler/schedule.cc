#include "scaler/schedule.h"

#include <algorithm>

namespace tidal::scaler {

ScheduleTracker::ScheduleTracker(const std::vector<ScheduleSpec>* schedules)
    : schedules_(schedules), states_(schedules->size()) {}

const ScheduleTracker::Bounds& ScheduleTracker::At(absl::Time now) {
  bool changed = false;
  for (size_t i = 0; i < states_.size(); ++i) {
    State& st = states_[i];
    if (now >= st.valid_from && now < st.valid_until) continue;
    const ScheduleSpec& s = (*schedules_)[i];
    // The first firing after now - duration: active iff it is not after now.
    const absl::Time f = s.cron.Next(now - s.duration, s.zone);
    const bool active = f <= now;
    st.valid_from = now;
    st.valid_until = active ? f + s.duration : s.cron.Next(now, s.zone);
    if (active != st.active) changed = true;
    st.active = active;
  }
  if (changed) {
    bounds_ = Bounds{};
    for (size_t i = 0; i < states_.size(); ++i) {
      if (!states_[i].active) continue;
      const ScheduleSpec& s = (*schedules_)[i];
      bounds_.active.push_back(s.name);
      if (s.min_replicas >= 0)
        bounds_.min_replicas = std::max(bounds_.min_replicas, s.min_replicas);
      if (s.max_replicas >= 0) {
        bounds_.max_replicas =
            bounds_.max_replicas < 0
                ? s.max_replicas
                : std::min(bounds_.max_replicas, s.max_replicas);
      }
    }
  }
  return bounds_;
}

}  // namespace tidal::scaler
