#include "scaler/kpa.h"

#include <algorithm>
#include <cmath>

#include "scaler/erlang.h"

namespace tidal::scaler {

KpaDecider::KpaDecider(const KpaParams& params, absl::Time now,
                       int32_t ready_at_start)
    : params_(params), max_panic_pods_(std::max(0, ready_at_start)) {
  if (ready_at_start > 1) panic_time_ = now;
}

void KpaDecider::Update(const KpaParams& params) {
  params_ = params;
  if (params_.scale_down_delay <= absl::ZeroDuration()) delay_window_.clear();
}

int32_t KpaDecider::DelayedCount(absl::Time now, int32_t desired) {
  // max.TimeWindow: ceil(delay / 2 s) buckets indexed by Unix seconds / 2.
  const int64_t buckets = static_cast<int64_t>(std::ceil(
      absl::ToDoubleSeconds(params_.scale_down_delay) / kDelayBucketSeconds));
  const int64_t index = absl::ToUnixSeconds(now) / kDelayBucketSeconds;
  int32_t v = desired;
  // Values no larger than the new one can never be the maximum again.
  while (!delay_window_.empty() && delay_window_.back().second <= v)
    delay_window_.pop_back();
  // Buckets that left the window.
  while (!delay_window_.empty() &&
         index - delay_window_.front().first >= buckets) {
    delay_window_.pop_front();
  }
  // Two values in one bucket: the larger counts.
  if (!delay_window_.empty() && delay_window_.back().first == index) {
    v = std::max(v, delay_window_.back().second);
    delay_window_.pop_back();
  }
  delay_window_.emplace_back(index, v);
  return delay_window_.front().second;
}

double KpaDecider::PodsFor(double v) const {
  if (params_.per_pod > 0 && service_s_ > 0) {
    if (v <= 0) return 0;
    const int64_t servers =
        met_by_reaction()
            ? static_cast<int64_t>(std::floor(v)) + 1
            : ErlangServers(v, service_s_, params_.wait_s, params_.wait_eps);
    return std::ceil(servers / params_.per_pod - 1e-9);
  }
  return std::ceil(v / params_.target_value);
}

KpaDecider::Result KpaDecider::Scale(absl::Time now, double stable,
                                     double panic, int32_t ready,
                                     int32_t stable_pods_override) {
  Result r;
  if (ready < 0 || std::isnan(stable) || std::isnan(panic)) {
    r.valid = false;
    r.desired = -1;
    r.panic = panicking();
    return r;
  }
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
  // Only a reachable revision delays its scale-down (an unreachable one gets
  // no traffic to wait for).
  if (params_.reachable && params_.scale_down_delay > absl::ZeroDuration())
    desired = DelayedCount(now, desired);
  r.desired = desired;
  r.panic = panicking();
  return r;
}

}  // namespace tidal::scaler
