#pragma once

// HpaDecider: the Kubernetes HorizontalPodAutoscaler's replica calculation
// (pkg/controller/podautoscaler: replica_calculator.go and horizontal.go):
// the replica calculator over per-pod metrics (integer-percent utilization,
// unready and missing pods, separate scale-up/scale-down tolerances with an
// inclusive edge), then either the nil-behavior normalization (the largest
// recommendation of the scale-down stabilization window, scale-up at most
// max(2 x current, 4) per sync) or, with a `behavior`, stabilization windows
// over past recommendations and Pods/Percent policies per period with
// selectPolicy Max/Min/Disabled. Not thread-safe: owned by one AppScaler.

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/time/time.h"
#include "scaler/config.h"

namespace tidal::scaler {

// One pod as the replica calculator sees it, already grouped as Kubernetes'
// groupPods does: ready (its metric counts), unready (pending, or a cpu pod
// still initializing: its metric is set aside), missing (running without a
// metric) or ignored (failed or being deleted).
struct HpaPod {
  enum State { kReady, kUnready, kMissing, kIgnored };
  State state = kReady;
  int64_t value = 0;    // the pod's metric, milli-units (ready, unready)
  int64_t request = 0;  // its resource request, milli-units (utilization)
};

// The usage-ratio band in which the count is kept: [1 - down, 1 + up], both
// edges inclusive (Kubernetes' Tolerances.isWithin).
struct HpaTolerances {
  double down = 0.1;
  double up = 0.1;
  bool Within(double ratio) const {
    return 1.0 - down <= ratio && ratio <= 1.0 + up;
  }
};

struct HpaReplicas {
  // false: no ready pod reported a metric; the controller keeps the count.
  bool ok = false;
  int32_t replicas = 0;
  // Utilization: the integer percent of the requests (floored); a plain
  // metric: the per-pod average (milli-units, floored).
  int64_t usage = 0;
};

class HpaDecider {
 public:
  // `nil_behavior`: the spec sets no `behavior` (Kubernetes' nil behavior:
  // normalizeDesiredReplicas, not the API's default policies).
  HpaDecider(const HpaRules& up, const HpaRules& down, HpaTolerances tolerances,
             bool nil_behavior = false)
      : up_(up),
        down_(down),
        tolerances_(tolerances),
        nil_behavior_(nil_behavior) {}

  // GetResourceReplicas: a target utilization in percent of the requests.
  static HpaReplicas ResourceReplicas(std::vector<HpaPod> pods, int32_t current,
                                      int64_t target_percent,
                                      HpaTolerances tolerances);
  // calcPlainMetricReplicas: a target per pod (milli-units).
  static HpaReplicas PlainReplicas(std::vector<HpaPod> pods, int32_t current,
                                   int64_t target, HpaTolerances tolerances);
  HpaReplicas ResourceReplicas(const std::vector<HpaPod>& pods, int32_t current,
                               int64_t target_percent) const {
    return ResourceReplicas(pods, current, target_percent, tolerances_);
  }
  HpaReplicas PlainReplicas(const std::vector<HpaPod>& pods, int32_t current,
                            int64_t target) const {
    return PlainReplicas(pods, current, target, tolerances_);
  }

  // One HPA sync: `recommendation` from the replica calculator, normalized
  // against `current` within [min, max]; records the recommendation and,
  // with a behavior and `store_event`, the scale event (false: the caller
  // calls Rescaled with the count it settles on).
  int32_t Normalize(absl::Time now, int32_t recommendation, int32_t current,
                    int32_t min_replicas, int32_t max_replicas,
                    bool store_event = true);
  // storeScaleEvent: the controller rescaled from `prev` to `next` (whatever
  // decided it: the metrics, or the min/max bounds). Nothing without a
  // behavior, as upstream.
  void Rescaled(absl::Time now, int32_t prev, int32_t next) {
    if (!nil_behavior_) StoreEvent(now, prev, next);
  }

  // The nil-behavior pieces, as horizontal.go's stabilizeRecommendation and
  // convertDesiredReplicasWithRules.
  struct Recommendation {
    int32_t value;
    absl::Time time;
  };
  static int32_t StabilizeNil(std::vector<Recommendation>* log, absl::Time now,
                              absl::Duration window, int32_t recommendation);
  static int32_t ConvertWithRules(int32_t current, int32_t desired,
                                  int32_t min_replicas, int32_t max_replicas);

  // New rules and tolerances; the recommendations and scale events are kept.
  void Update(const HpaRules& up, const HpaRules& down,
              HpaTolerances tolerances, bool nil_behavior) {
    up_ = up;
    down_ = down;
    tolerances_ = tolerances;
    nil_behavior_ = nil_behavior;
  }
  HpaTolerances tolerances() const { return tolerances_; }

  // recordInitialRecommendation: called at every sync, before anything else
  // (min/max bounds, missing metrics); records `current` at the first.
  void RecordInitial(absl::Time now, int32_t current);

 private:
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
  HpaTolerances tolerances_;
  bool nil_behavior_;
  std::vector<Recommendation> recommendations_;
  std::deque<Event> up_events_, down_events_;
  bool initialized_ = false;
};

}  // namespace tidal::scaler
