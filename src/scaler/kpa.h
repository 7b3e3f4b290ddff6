#pragma once

// KpaDecider: Knative's autoscaler.Scale() (pkg/autoscaler/scaling/
// autoscaler.go) over already-averaged stable and panic values: rate limits,
// panic mode entry/extension/exit, no scale-down while panicking, activation
// scale and the scale-down delay window. Not thread-safe: owned by one
// AppScaler.

#include <cstdint>

#include "absl/time/time.h"
#include "scaler/windows.h"

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
  // Tidal's sizing (0 = Knative's): pods = min(ceil(v / target_value),
  // ceil((v + beta * sqrt(v * per_pod)) / per_pod)), i.e. square-root
  // staffing headroom instead of a fixed utilization once load is large.
  double headroom_beta = 0;
  double per_pod = 0;  // the full per-instance target (before utilization)
};

class KpaDecider {
 public:
  // As Knative's newAutoscaler: starts in panic mode (at `now`, holding
  // `ready_at_start` pods) when more than one pod is ready, so a restart does
  // not scale down before metrics are back.
  KpaDecider(const KpaParams& params, absl::Time now, int32_t ready_at_start);

  struct Result {
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
  bool panicking() const { return panic_time_ != absl::InfinitePast(); }
  const KpaParams& params() const { return params_; }

 private:
  KpaParams params_;
  absl::Time panic_time_ = absl::InfinitePast();
  int32_t max_panic_pods_ = 0;
  MaxWindow<int32_t, absl::Time> delay_window_;
};

}  // namespace tidal::scaler
