#include "scaler/kpa.h"

#include <algorithm>
#include <cmath>

namespace tidal::scaler {

KpaDecider::KpaDecider(const KpaParams& params, absl::Time now,
                       int32_t ready_at_start)
    : params_(params) {
  if (ready_at_start > 1) {
    panic_time_ = now;
    max_panic_pods_ = ready_at_start;
  }
}

double KpaDecider::PodsFor(double v) const {
  double pods = std::ceil(v / params_.target_value);
  if (params_.headroom_beta > 0 && params_.per_pod > 0 && v > 0) {
    double sq =
        std::ceil((v + params_.headroom_beta * std::sqrt(v * params_.per_pod)) /
                  params_.per_pod);
    pods = std::min(pods, sq);
  }
  return pods;
}

KpaDecider::Result KpaDecider::Scale(absl::Time now, double stable,
                                     double panic, int32_t ready,
                                     int32_t stable_pods_override) {
  Result r;
  const double ready_pods = std::max(1.0, static_cast<double>(ready));
  const double max_scale_up = std::ceil(params_.max_scale_up_rate * ready_pods);
  double max_scale_down = 0;
  if (params_.reachable)
    max_scale_down = std::floor(ready_pods / params_.max_scale_down_rate);

  const double dspc =
      stable_pods_override >= 0 ? stable_pods_override : PodsFor(stable);
  const double dppc = PodsFor(panic);
  r.stable_pods = dspc;
  r.panic_pods = dppc;
  int32_t desired_stable = static_cast<int32_t>(
      std::min(std::max(dspc, max_scale_down), max_scale_up));
  int32_t desired_panic = static_cast<int32_t>(
      std::min(std::max(dppc, max_scale_down), max_scale_up));
  if (params_.activation_scale > 1) {
    if (dspc > 0 && params_.activation_scale > desired_stable) {
      desired_stable = params_.activation_scale;
    }
    if (dppc > 0 && params_.activation_scale > desired_panic) {
      desired_panic = params_.activation_scale;
    }
  }

  const bool over = dppc / ready_pods >= params_.panic_threshold;
  if (over) {
    panic_time_ = now;  // enter, or extend the panic window
  } else if (panicking() && panic_time_ + params_.stable_window < now) {
    panic_time_ = absl::InfinitePast();
    max_panic_pods_ = 0;
  }

  int32_t desired = desired_stable;
  if (panicking()) {
    desired = std::max(desired, desired_panic);
    if (desired > max_panic_pods_) max_panic_pods_ = desired;
    desired = max_panic_pods_;
  }
  if (params_.scale_down_delay > absl::ZeroDuration()) {
    delay_window_.Record(now, desired);
    desired = delay_window_.Current(now, params_.scale_down_delay, desired);
  }
  r.desired = desired;
  r.panic = panicking();
  return r;
}

}  // namespace tidal::scaler
