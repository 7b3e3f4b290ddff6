#include "scaler/hpa.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace tidal::scaler {

namespace {

// The pods whose metric counts in a ratio: (value, request).
using Metrics = std::vector<std::pair<int64_t, int64_t>>;

int32_t CeilReplicas(double v) {
  const double c = std::ceil(v);
  if (c >= static_cast<double>(std::numeric_limits<int32_t>::max()))
    return std::numeric_limits<int32_t>::max();
  return static_cast<int32_t>(c);
}

// GetResourceUtilizationRatio: the utilization is an integer percent,
// floored (sum of usage x 100 / sum of requests).
int64_t Utilization(const Metrics& m) {
  int64_t used = 0, requested = 0;
  for (const auto& [value, request] : m) {
    used += value;
    requested += request;
  }
  return requested > 0 ? used * 100 / requested : 0;
}

// GetMetricUsageRatio: the per-pod average, floored.
int64_t Average(const Metrics& m) {
  int64_t total = 0;
  for (const auto& [value, request] : m) total += value;
  return m.empty() ? 0 : total / static_cast<int64_t>(m.size());
}

// The replica calculator's common path: `usage_of` turns the counted
// metrics into the usage compared with `target`; `missing_down` is what a
// missing pod is assumed to use on a scale-down.
template <typename UsageOf, typename MissingDown>
HpaReplicas Calculate(const std::vector<HpaPod>& pods, int32_t current,
                      int64_t target, HpaTolerances tol, UsageOf usage_of,
                      MissingDown missing_down) {
  HpaReplicas out;
  Metrics metrics;
  std::vector<const HpaPod*> unready, missing;
  int32_t ready = 0;
  for (const HpaPod& p : pods) {
    switch (p.state) {
      case HpaPod::kReady:
        ++ready;
        metrics.emplace_back(p.value, p.request);
        break;
      case HpaPod::kUnready:
        unready.push_back(&p);
        break;
      case HpaPod::kMissing:
        missing.push_back(&p);
        break;
      case HpaPod::kIgnored:
        break;
    }
  }
  // "did not receive metrics for targeted pods (pods might be unready)"
  if (metrics.empty() || target <= 0) return out;
  out.ok = true;
  out.usage = usage_of(metrics);
  const double ratio =
      static_cast<double>(out.usage) / static_cast<double>(target);
  const bool up_with_unready = !unready.empty() && ratio > 1.0;
  if (!up_with_unready && missing.empty()) {
    out.replicas = tol.Within(ratio) ? current : CeilReplicas(ratio * ready);
    return out;
  }
  // Missing pods: assumed at the fallback on a scale-down, at 0 on a
  // scale-up; unready pods at 0 on a scale-up (ignored otherwise).
  for (const HpaPod* p : missing) {
    if (ratio < 1.0) {
      metrics.emplace_back(missing_down(*p), p->request);
    } else if (ratio > 1.0) {
      metrics.emplace_back(0, p->request);
    }
  }
  if (up_with_unready) {
    for (const HpaPod* p : unready) metrics.emplace_back(0, p->request);
  }
  const double new_ratio =
      static_cast<double>(usage_of(metrics)) / static_cast<double>(target);
  // Too small a change, or the assumptions flip the direction: no change.
  if (tol.Within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) ||
      (ratio > 1.0 && new_ratio < 1.0)) {
    out.replicas = current;
    return out;
  }
  const int32_t n =
      CeilReplicas(new_ratio * static_cast<double>(metrics.size()));
  out.replicas =
      (new_ratio < 1.0 && n > current) || (new_ratio > 1.0 && n < current)
          ? current
          : n;
  return out;
}

}  // namespace

HpaReplicas HpaDecider::ResourceReplicas(std::vector<HpaPod> pods,
                                         int32_t current,
                                         int64_t target_percent,
                                         HpaTolerances tolerances) {
  // "missing request for ...": a counted pod without a request.
  for (const HpaPod& p : pods) {
    if (p.state == HpaPod::kReady && p.request <= 0) return {};
  }
  const int64_t fallback = std::max<int64_t>(100, target_percent);
  return Calculate(
      pods, current, target_percent, tolerances, Utilization,
      [fallback](const HpaPod& p) { return p.request * fallback / 100; });
}

HpaReplicas HpaDecider::PlainReplicas(std::vector<HpaPod> pods, int32_t current,
                                      int64_t target,
                                      HpaTolerances tolerances) {
  return Calculate(pods, current, target, tolerances, Average,
                   [target](const HpaPod&) { return target; });
}

int32_t HpaDecider::StabilizeNil(std::vector<Recommendation>* log,
                                 absl::Time now, absl::Duration window,
                                 int32_t recommendation) {
  int32_t max_rec = recommendation;
  const absl::Time cutoff = now - window;
  int old_index = -1;
  for (size_t i = 0; i < log->size(); ++i) {
    const Recommendation& r = (*log)[i];
    if (r.time < cutoff) {
      old_index = static_cast<int>(i);
    } else if (r.value > max_rec) {
      max_rec = r.value;
    }
  }
  if (old_index >= 0) {
    (*log)[old_index] = {recommendation, now};
  } else {
    log->push_back({recommendation, now});
  }
  return max_rec;
}

int32_t HpaDecider::ConvertWithRules(int32_t current, int32_t desired,
                                     int32_t min_replicas,
                                     int32_t max_replicas) {
  // calculateScaleUpLimit: max(2 x current, 4); never below 1.
  const int64_t up_limit = std::max<int64_t>(2 * int64_t{current}, 4);
  const int64_t max_allowed = std::min<int64_t>(max_replicas, up_limit);
  const int32_t min_allowed = std::max(1, min_replicas);
  if (desired < min_allowed) return min_allowed;
  if (desired > max_allowed) return static_cast<int32_t>(max_allowed);
  return desired;
}

void HpaDecider::RecordInitial(absl::Time now, int32_t current) {
  // recordInitialRecommendation: the controller's first sync of an HPA
  // (after its creation, or the controller's start) records the current
  // count, whatever the behavior: for the stabilization window that
  // follows, a scale-down goes no lower than the count the HPA found.
  if (initialized_) return;
  initialized_ = true;
  recommendations_.push_back({current, now});
}

int32_t HpaDecider::Stabilize(absl::Time now, int32_t recommendation,
                              int32_t current) {
  RecordInitial(now, current);
  int32_t up_rec = recommendation, down_rec = recommendation;
  const absl::Time up_cutoff = now - up_.stabilization;
  const absl::Time down_cutoff = now - down_.stabilization;
  const absl::Time old_cutoff = std::min(up_cutoff, down_cutoff);
  int old_index = -1;
  for (size_t i = 0; i < recommendations_.size(); ++i) {
    const Recommendation& r = recommendations_[i];
    if (r.time > up_cutoff) up_rec = std::min(r.value, up_rec);
    if (r.time > down_cutoff) down_rec = std::max(r.value, down_rec);
    if (r.time < old_cutoff) old_index = static_cast<int>(i);
  }
  int32_t out = current;
  if (out < up_rec) out = up_rec;
  if (out > down_rec) out = down_rec;
  if (old_index >= 0) {
    recommendations_[old_index] = {recommendation, now};
  } else {
    recommendations_.push_back({recommendation, now});
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
                              int32_t max_replicas, bool store_event) {
  if (nil_behavior_) {
    // normalizeDesiredReplicas: the window's largest recommendation, the
    // count at the first sync among them; no scale-down rate, scale-up at
    // most max(2 x current, 4) per sync.
    RecordInitial(now, current);
    const int32_t stabilized = StabilizeNil(
        &recommendations_, now, down_.stabilization, recommendation);
    return ConvertWithRules(current, stabilized, min_replicas, max_replicas);
  }
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
  if (store_event) StoreEvent(now, current, desired);
  return desired;
}

}  // namespace tidal::scaler
