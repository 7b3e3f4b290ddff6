#include "scaler/hpa.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tidal::scaler {

int32_t HpaDecider::Recommend(double usage_ratio, int32_t current,
                              int32_t ready) const {
  if (std::fabs(1.0 - usage_ratio) <= tolerance_) return current;
  return static_cast<int32_t>(std::ceil(usage_ratio * ready));
}

int32_t HpaDecider::Stabilize(absl::Time now, int32_t recommendation,
                              int32_t current) {
  // maybeInitScaleDownStabilizationWindow
  if (!initialized_) {
    initialized_ = true;
    if (down_.stabilization > absl::ZeroDuration()) {
      recommendations_.push_back({now, current});
    }
  }
  int32_t up_rec = recommendation, down_rec = recommendation;
  const absl::Time up_cutoff = now - up_.stabilization;
  const absl::Time down_cutoff = now - down_.stabilization;
  const absl::Time old_cutoff = std::min(up_cutoff, down_cutoff);
  int old_index = -1;
  for (size_t i = 0; i < recommendations_.size(); ++i) {
    const Rec& r = recommendations_[i];
    if (r.time > up_cutoff) up_rec = std::min(r.value, up_rec);
    if (r.time > down_cutoff) down_rec = std::max(r.value, down_rec);
    if (r.time < old_cutoff) old_index = static_cast<int>(i);
  }
  int32_t out = current;
  if (out < up_rec) out = up_rec;
  if (out > down_rec) out = down_rec;
  if (old_index >= 0) {
    recommendations_[old_index] = {now, recommendation};
  } else {
    recommendations_.push_back({now, recommendation});
  }
  return out;
}

int32_t HpaDecider::ChangeInPeriod(absl::Time now, absl::Duration period,
                                   const std::deque<Event>& events) {
  const absl::Time cutoff = now - period;
  int32_t sum = 0;
  for (const Event& e : events) {
    if (e.time > cutoff) sum += e.change;
  }
  return sum;
}

int32_t HpaDecider::ScaleUpLimit(absl::Time now, int32_t current) const {
  if (up_.select == HpaRules::kDisabled) return current;
  const bool pick_min = up_.select == HpaRules::kMin;
  int64_t result = pick_min ? std::numeric_limits<int32_t>::max()
                            : std::numeric_limits<int32_t>::min();
  for (const HpaPolicy& p : up_.policies) {
    int32_t added = ChangeInPeriod(now, p.period, up_events_);
    int32_t deleted = ChangeInPeriod(now, p.period, down_events_);
    int32_t start = current - added + deleted;
    int64_t proposed =
        p.type == HpaPolicy::kPods
            ? static_cast<int64_t>(start) + p.value
            : static_cast<int64_t>(std::ceil(start * (1 + p.value / 100.0)));
    result = pick_min ? std::min(result, proposed) : std::max(result, proposed);
  }
  return static_cast<int32_t>(
      std::clamp<int64_t>(result, 0, std::numeric_limits<int32_t>::max()));
}

int32_t HpaDecider::ScaleDownLimit(absl::Time now, int32_t current) const {
  if (down_.select == HpaRules::kDisabled) return current;
  // Min picks the largest remaining count (the smallest change).
  const bool pick_max = down_.select == HpaRules::kMin;
  int64_t result = pick_max ? std::numeric_limits<int32_t>::min()
                            : std::numeric_limits<int32_t>::max();
  for (const HpaPolicy& p : down_.policies) {
    int32_t deleted = ChangeInPeriod(now, p.period, down_events_);
    int32_t added = ChangeInPeriod(now, p.period, up_events_);
    int32_t start = current + deleted - added;
    int64_t proposed =
        p.type == HpaPolicy::kPods
            ? static_cast<int64_t>(start) - p.value
            : static_cast<int64_t>(start * (1 - p.value / 100.0));
    result = pick_max ? std::max(result, proposed) : std::min(result, proposed);
  }
  return static_cast<int32_t>(
      std::clamp<int64_t>(result, std::numeric_limits<int32_t>::min(),
                          std::numeric_limits<int32_t>::max()));
}

void HpaDecider::StoreEvent(absl::Time now, int32_t prev, int32_t next) {
  if (next == prev) return;
  const bool up = next > prev;
  std::deque<Event>& events = up ? up_events_ : down_events_;
  const HpaRules& rules = up ? up_ : down_;
  absl::Duration longest = absl::ZeroDuration();
  for (const HpaPolicy& p : rules.policies)
    longest = std::max(longest, p.period);
  for (Event& e : events) {
    if (e.time + longest <= now) e.outdated = true;
  }
  const int32_t change = up ? next - prev : prev - next;
  for (Event& e : events) {
    if (e.outdated) {
      e = {now, change, false};
      return;
    }
  }
  events.push_back({now, change, false});
}

int32_t HpaDecider::Normalize(absl::Time now, int32_t recommendation,
                              int32_t current, int32_t min_replicas,
                              int32_t max_replicas) {
  int32_t desired = Stabilize(now, recommendation, current);
  if (desired > current) {
    int32_t limit = std::max(ScaleUpLimit(now, current), current);
    int32_t allowed = std::min(max_replicas, limit);
    desired = std::min(desired, allowed);
  } else if (desired < current) {
    int32_t limit = std::min(ScaleDownLimit(now, current), current);
    int32_t allowed = std::max(min_replicas, limit);
    desired = std::max(desired, allowed);
  }
  StoreEvent(now, current, desired);
  return desired;
}

}  // namespace tidal::scaler
