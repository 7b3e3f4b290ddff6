#pragma once

// KpaDecider: Knative's autoscaler.Scale() (pkg/autoscaler/scaling/
// autoscaler.go) over already-averaged stable and panic values: rate limits,
// panic mode entry/extension/exit, no scale-down while panicking, activation
// scale, `reachable`, the scale-down delay in 2 s buckets, invalid results on
// missing data and Update() without losing state. Not thread-safe: owned by
// one AppScaler.

#include <cstdint>
#include <deque>
#include <limits>
#include <utility>

#include "absl/time/time.h"

namespace tidal::scaler {

struct KpaParams {
  double target_value = 70;      // per pod, after utilization
  double panic_threshold = 2.0;  // ratio (Knative's 200% = 2.0)
  double max_scale_up_rate = 1000;
  double max_scale_down_rate = 2;
  absl::Duration stable_window = absl::Seconds(60);
  absl::Duration scale_down_delay = absl::ZeroDuration();
  int32_t activation_scale = 1;
  bool reachable = true;
  // Tidal's sizing for a waiting time (per_pod = 0: Knative's): the load v
  // (concurrency, in erlangs) is offered to pods x per_pod servers, and pods
  // is the fewest with P(wait > wait_s) <= wait_eps (Erlang C) once the
  // service time is known (KpaDecider::set_service_time).
  double per_pod = 0;  // requests an instance serves at once (the target)
  double wait_s = 1;
  double wait_eps = 0.01;
};

class KpaDecider {
 public:
  // Knative's delay window granularity (multiscaler.go's tickInterval).
  static constexpr int64_t kDelayBucketSeconds = 2;
  // Scale() inputs Knative's metric client or pod counter could not give:
  // `stable`/`panic` kNoData or `ready` kUnknownReady make an invalid result.
  static constexpr double kNoData = std::numeric_limits<double>::quiet_NaN();
  static constexpr int32_t kUnknownReady = -1;

  // As Knative's newAutoscaler: maxPanicPods starts at `ready_at_start`, and
  // the decider starts in panic mode (at `now`) when more than one pod is
  // ready, so a restart does not scale down before metrics are back.
  KpaDecider(const KpaParams& params, absl::Time now, int32_t ready_at_start);

  // Knative's Update(): new parameters; the panic state and the scale-down
  // delay window are kept (the window's length follows the new delay).
  void Update(const KpaParams& params);

  struct Result {
    // false: metrics or the ready count were unavailable; `desired` is -1 and
    // the caller keeps the current scale (Knative's invalidSR).
    bool valid = true;
    int32_t desired = 0;
    bool panic = false;
    double stable_pods = 0;  // ceil(stable / target)
    double panic_pods = 0;
  };
  // `stable_pods_override` >= 0 replaces the stable recommendation
  // (ceil(stable / target)) before the rate limits, panic mode and the
  // scale-down delay apply: Tidal's keep-warm count for an idle app.
  Result Scale(absl::Time now, double stable, double panic, int32_t ready,
               int32_t stable_pods_override = -1);

  // Pods for a load `v` under these parameters.
  double PodsFor(double v) const;
  // Tidal: the app's measured mean service time (0: unknown, Knative's
  // sizing).
  void set_service_time(double s) { service_s_ = s; }
  // Tidal: how long a waiting request waits at most for an instance started
  // for it (the start time plus a tick). A wait target at least that long is
  // met by that reaction: the load needs no headroom for it.
  void set_reaction_time(double s) { reaction_s_ = s; }
  void set_wait_target(double s) { params_.wait_s = s; }
  // The wait target is met by the reaction: no Erlang headroom.
  bool met_by_reaction() const {
    return reaction_s_ > 0 && params_.wait_s >= reaction_s_;
  }
  double service_time() const { return service_s_; }
  bool panicking() const { return panic_time_ != absl::InfinitePast(); }
  int32_t max_panic_pods() const { return max_panic_pods_; }
  const KpaParams& params() const { return params_; }

 private:
  KpaParams params_;
  double service_s_ = 0;
  double reaction_s_ = 0;
  absl::Time panic_time_ = absl::InfinitePast();
  int32_t max_panic_pods_ = 0;
  // Knative's max.TimeWindow over 2 s buckets: (bucket index, value) in
  // descending value order; the front is the maximum.
  std::deque<std::pair<int64_t, int32_t>> delay_window_;
  int32_t DelayedCount(absl::Time now, int32_t desired);
};

}  // namespace tidal::scaler
