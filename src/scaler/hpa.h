#pragma once

// HpaDecider: the Kubernetes HorizontalPodAutoscaler's replica calculation
// (pkg/controller/podautoscaler: replica_calculator.go and horizontal.go):
// desired = ceil(ready * metric / target) outside the tolerance band, then
// stabilization windows over past recommendations and Pods/Percent policies
// per period with selectPolicy Max/Min/Disabled. Not thread-safe: owned by one
// AppScaler.

#include <cstdint>
#include <deque>

#include "absl/time/time.h"
#include "scaler/config.h"

namespace tidal::scaler {

class HpaDecider {
 public:
  HpaDecider(const HpaRules& up, const HpaRules& down, double tolerance)
      : up_(up), down_(down), tolerance_(tolerance) {}

  // The metric-only recommendation (replica_calculator): `usage_ratio` is the
  // per-pod metric over its target.
  int32_t Recommend(double usage_ratio, int32_t current, int32_t ready) const;

  // One HPA sync: `recommendation` from Recommend(), normalized with the
  // behavior against `current` within [min, max]; records the scale event.
  int32_t Normalize(absl::Time now, int32_t recommendation, int32_t current,
                    int32_t min_replicas, int32_t max_replicas);

 private:
  struct Rec {
    absl::Time time;
    int32_t value;
  };
  struct Event {
    absl::Time time;
    int32_t change;
    bool outdated;
  };
  int32_t Stabilize(absl::Time now, int32_t recommendation, int32_t current);
  int32_t ScaleUpLimit(absl::Time now, int32_t current) const;
  int32_t ScaleDownLimit(absl::Time now, int32_t current) const;
  static int32_t ChangeInPeriod(absl::Time now, absl::Duration period,
                                const std::deque<Event>& events);
  void StoreEvent(absl::Time now, int32_t prev, int32_t next);

  HpaRules up_, down_;
  double tolerance_;
  std::deque<Rec> recommendations_;
  std::deque<Event> up_events_, down_events_;
  bool initialized_ = false;
};

}  // namespace tidal::scaler
