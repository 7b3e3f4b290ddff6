#include "scaler/autoscaler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace tidal::scaler {

namespace {

int Seconds(absl::Duration d) {
  return static_cast<int>(std::max<int64_t>(1, absl::ToInt64Seconds(d)));
}

KpaParams MakeKpaParams(const ScalerConfig& c, const AppScalerOptions& o) {
  KpaParams p;
  p.target_value = c.TargetValue();
  p.panic_threshold = c.panic_threshold / 100.0;
  p.max_scale_up_rate = c.max_scale_up_rate;
  p.max_scale_down_rate = c.max_scale_down_rate;
  p.stable_window = c.stable_window;
  p.scale_down_delay = c.scale_down_delay;
  p.activation_scale = c.activation_scale;
  if (c.algorithm == Algorithm::kTidal) {
    p.headroom_beta = o.tidal_headroom_beta;
    p.per_pod = c.target;
  }
  return p;
}

std::string Num(double v) { return absl::StrFormat("%.4g", v); }

}  // namespace

absl::StatusOr<std::unique_ptr<AppScaler>> AppScaler::Create(
    const tidal::v1::Scaling& spec, absl::Time now,
    const AppScalerOptions& opts) {
  ASSIGN_OR_RETURN(ScalerConfig config,
                   ResolveConfig(spec, opts.container_concurrency));
  return std::make_unique<AppScaler>(std::move(config), now, opts);
}

AppScaler::AppScaler(ScalerConfig config, absl::Time now,
                     const AppScalerOptions& opts)
    : config_(std::move(config)),
      opts_(opts),
      kpa_(MakeKpaParams(config_, opts), now, opts.ready_at_start),
      hpa_(config_.scale_up, config_.scale_down, config_.tolerance),
      behavior_(config_.user_scale_up, config_.user_scale_down,
                config_.tolerance),
      stable_(Seconds(config_.stable_window)),
      panic_(Seconds(config_.PanicWindow())),
      hpa_window_(Seconds(config_.tick)),
      schedules_(&config_.schedules),
      ready_(opts.ready_at_start),
      current_(opts.current_at_start),
      start_duration_(opts.start_duration),
      active_since_(now) {
  last_traffic_end_ = absl::ToUnixSeconds(now);
}

void AppScaler::RecordValue(int64_t sec, double value, bool partial) {
  if (!partial && partial_second_ && !stable_.empty() &&
      sec == stable_.last_write()) {
    stable_.ReplaceLast(value);
    panic_.ReplaceLast(value);
    hpa_window_.ReplaceLast(value);
    partial_second_ = false;
    return;
  }
  // As in Knative, nothing reports for an app without instances or traffic.
  if (value == 0 && ready_ == 0) return;
  stable_.Record(sec, value);
  panic_.Record(sec, value);
  hpa_window_.Record(sec, value);
  partial_second_ = partial;
}

void AppScaler::Record(const MetricSample& s) {
  const int64_t sec = absl::ToUnixSeconds(s.time);
  const bool traffic = s.concurrency > 0 || s.requests > 0;
  if (traffic) {
    if (seen_traffic_ && sec > last_traffic_end_)
      idle_.Add(sec - last_traffic_end_);
    seen_traffic_ = true;
    last_traffic_end_ = std::max(last_traffic_end_, sec + 1);
  }
  const double value =
      config_.metric == Metric::kRps ? s.requests : s.concurrency;
  if (config_.predictive) predictor_.Add(s.time, value);
  if (config_.metric == Metric::kConcurrency ||
      config_.metric == Metric::kRps) {
    if (config_.algorithm == Algorithm::kKeepAlive) {
      keep_alive_.Record(
          sec, static_cast<int32_t>(std::ceil(value / config_.target - 1e-9)));
    }
    RecordValue(sec, value, false);
  }
}

void AppScaler::RecordUtilization(absl::Time second, double cpu_percent,
                                  double memory_percent) {
  if (config_.metric != Metric::kCpu && config_.metric != Metric::kMemory)
    return;
  const double per =
      config_.metric == Metric::kCpu ? cpu_percent : memory_percent;
  const double total = per * std::max(0, ready_);
  const int64_t sec = absl::ToUnixSeconds(second);
  if (config_.algorithm == Algorithm::kKeepAlive) {
    keep_alive_.Record(
        sec, static_cast<int32_t>(std::ceil(total / config_.target - 1e-9)));
  }
  RecordValue(sec, total, false);
}

void AppScaler::SetInstances(int32_t ready, int32_t current) {
  if (ready_ == 0 && ready > 0) became_active_ = true;
  ready_ = std::max(0, ready);
  current_ = std::max(0, current);
}

void AppScaler::SetWaiting(absl::Time now, int32_t waiting) {
  waiting_ = std::max(0, waiting);
  if (waiting_ == 0 || ready_ > 0) return;
  if (config_.metric != Metric::kConcurrency && config_.metric != Metric::kRps)
    return;
  // The activator reports the requests it holds, as Knative's does.
  const int64_t sec = absl::ToUnixSeconds(now);
  if (!stable_.empty() && stable_.last_write() == sec) {
    if (partial_second_ && stable_.Last() < waiting_) {
      stable_.ReplaceLast(waiting_);
      panic_.ReplaceLast(waiting_);
      hpa_window_.ReplaceLast(waiting_);
    }
  } else if (stable_.empty() || stable_.last_write() < sec) {
    RecordValue(sec, waiting_, true);
  }
  if (config_.algorithm == Algorithm::kKeepAlive) {
    keep_alive_.Record(
        sec, static_cast<int32_t>(std::ceil(waiting_ / config_.target - 1e-9)));
  }
}

void AppScaler::ObserveStartDuration(absl::Duration d) {
  if (d < absl::ZeroDuration()) return;
  // A smoothed estimate: new measurements weigh a quarter.
  start_duration_ =
      start_duration_ == absl::ZeroDuration()
          ? d
          : absl::Milliseconds(std::llround(
                0.75 * absl::ToDoubleMilliseconds(start_duration_) +
                0.25 * absl::ToDoubleMilliseconds(d)));
}

int32_t AppScaler::DecideKpa(absl::Time now, int64_t eval, Cause* cause) {
  if (stable_.empty()) {
    *cause = Cause::kNoData;
    return current_;
  }
  const double stable = stable_.WindowAverage(eval);
  const double panic = panic_.WindowAverage(eval);
  last_stable_ = stable;
  KpaDecider::Result r = kpa_.Scale(now, stable, panic, ready_);
  last_panic_ = r.panic;
  *cause = Cause::kMetric;
  int32_t desired = r.desired;
  if (desired > 0) {
    inactive_since_ = absl::InfinitePast();
    return desired;
  }
  // Knative's PodAutoscaler reconciler (handleScaleToZero): an active
  // revision stays at 1 for a stable window after it became active, then
  // for the scale-to-zero grace period after it was marked inactive.
  if (current_ == 0) return 0;
  if (now - active_since_ < config_.stable_window) {
    *cause = Cause::kActiveWindow;
    return 1;
  }
  if (inactive_since_ == absl::InfinitePast()) inactive_since_ = now;
  if (now - inactive_since_ < config_.scale_to_zero_grace) {
    *cause = Cause::kGrace;
    return 1;
  }
  *cause = Cause::kIdle;
  return 0;
}

int32_t AppScaler::DecideTidal(absl::Time now, int64_t eval, Cause* cause) {
  const double stable = stable_.WindowAverage(eval);
  double panic = panic_.WindowAverage(eval);
  last_stable_ = stable;
  // Burst: when the latest complete seconds alone need at least the panic
  // threshold times the ready instances, size on their peak rather than on
  // the panic-window average (which takes the whole window to take a step
  // in). KPA's panic rules then hold the count: no scale-down while
  // panicking.
  last_burst_ = false;
  double recent = 0;
  for (int64_t sec = eval - kBurstSeconds + 1; sec <= eval; ++sec)
    recent = std::max(recent, panic_.At(sec));
  if (recent > panic && kpa_.PodsFor(recent) / std::max(1, ready_) >=
                            kpa_.params().panic_threshold) {
    panic = recent;
    last_burst_ = true;
    last_burst_value_ = recent;
  }
  const int64_t now_s = absl::ToUnixSeconds(now);
  const bool busy = waiting_ > 0 || (seen_traffic_ && last_traffic_end_ > eval);
  last_idle_s_ = busy ? 0 : now_s - last_traffic_end_;
  idle_held_ = IdleHold::kNone;
  // An app that has had no request yet is idle from its creation: the
  // keep-warm rules below decide (it keeps the instances it was created
  // with for the keep-alive, and one created at zero stays at zero).
  if (busy ||
      (seen_traffic_ && last_idle_s_ < Seconds(config_.PanicWindow()))) {
    KpaDecider::Result r = kpa_.Scale(now, stable, panic, ready_);
    last_panic_ = r.panic;
    *cause = Cause::kMetric;
    return r.desired;
  }
  // Idle: the keep-warm policy learned from this app's idle times gives the
  // count (1 or 0) in place of the stable recommendation; KPA's rules still
  // apply to it, so the status never contradicts the count: no scale-down
  // while panicking, at most maxScaleDownRate per tick, and scaleDownDelay.
  const IdleHistogram::Policy& p = idle_.policy();
  const int64_t lead = absl::ToInt64Seconds(start_duration_ + config_.tick) + 1;
  bool warm;
  if (p.representative) {
    warm = last_idle_s_ + lead >= p.prewarm_s &&
           last_idle_s_ <= p.prewarm_s + p.keep_alive_s;
    *cause = warm ? (p.prewarm_s > 0 ? Cause::kPrewarm : Cause::kKeepWarm)
                  : Cause::kIdle;
  } else {
    const bool rare =
        idle_.out_of_bounds() > 0 && idle_.out_of_bounds() * 2 > idle_.total();
    const absl::Duration ka =
        rare ? config_.stable_window : opts_.tidal_fallback_keep_alive;
    // An app that has had no request yet and has no instance stays at zero
    // (minReplicas: 0 means no process until the first request): its
    // "idle time" counts from its creation, not from any traffic.
    warm = (seen_traffic_ || current_ > 0) &&
           last_idle_s_ <= absl::ToInt64Seconds(ka);
    *cause = warm ? Cause::kKeepWarm : Cause::kIdle;
  }
  const int32_t keep = warm ? 1 : 0;
  KpaDecider::Result r = kpa_.Scale(now, stable, panic, ready_, keep);
  last_panic_ = r.panic;
  if (r.desired > keep) {
    const int32_t rate_floor = static_cast<int32_t>(
        std::floor(std::max(1, ready_) / kpa_.params().max_scale_down_rate));
    if (r.panic) {
      idle_held_ = IdleHold::kPanic;
    } else if (config_.scale_down_delay > absl::ZeroDuration() &&
               r.desired > rate_floor) {
      idle_held_ = IdleHold::kDelay;
    } else {
      idle_held_ = IdleHold::kRate;
    }
  }
  return r.desired;
}

int32_t AppScaler::DecideHpa(absl::Time now, int64_t eval, int32_t min_r,
                             int32_t max_r, Cause* cause) {
  *cause = Cause::kMetric;
  if (current_ > max_r) {
    *cause = Cause::kMax;
    return max_r;
  }
  if (current_ < min_r) {
    *cause = Cause::kMin;
    return min_r;
  }
  if (hpa_window_.empty()) {
    *cause = Cause::kNoData;
    return current_;
  }
  const double total = hpa_window_.WindowAverage(eval);
  last_stable_ = total;
  const double per_pod = total / std::max(1, ready_);
  const double ratio = per_pod / config_.TargetValue();
  int32_t rec = hpa_.Recommend(ratio, current_, ready_);
  if (rec == current_ && std::fabs(1.0 - ratio) <= config_.tolerance)
    *cause = Cause::kTolerance;
  return hpa_.Normalize(now, rec, current_, min_r, max_r);
}

int32_t AppScaler::DecideKeepAlive(int64_t eval, Cause* cause) {
  last_stable_ = stable_.empty() ? 0 : stable_.WindowAverage(eval);
  int32_t d =
      keep_alive_.Current(eval, absl::ToInt64Seconds(config_.keep_alive), 0);
  if (waiting_ > 0) d = std::max(d, 1);
  *cause = d > 0 ? Cause::kKeepWarm : Cause::kIdle;
  return d;
}

Decision AppScaler::Decide(absl::Time now) {
  if (became_active_) {
    active_since_ = now;
    became_active_ = false;
  }
  const int64_t now_s = absl::ToUnixSeconds(now);
  const int64_t eval =
      (!stable_.empty() && stable_.last_write() >= now_s) ? now_s : now_s - 1;

  // Effective bounds: spec, then schedules (largest minimum; a schedule's
  // maximum replaces the spec's), then the predicted floor.
  int32_t min_r = config_.min_replicas;
  int32_t max_r = config_.max_replicas > 0
                      ? config_.max_replicas
                      : std::numeric_limits<int32_t>::max();
  Cause bound_cause = Cause::kMin;
  const ScheduleTracker::Bounds* sb = nullptr;
  if (!config_.schedules.empty()) {
    sb = &schedules_.At(now);
    // A schedule's maxReplicas is > 0 here (0, "no cap", is not recorded).
    if (sb->max_replicas > 0) max_r = sb->max_replicas;
    if (sb->min_replicas > min_r) {
      min_r = sb->min_replicas;
      bound_cause = Cause::kSchedule;
    }
  }
  // Only a schedule's minimum can exceed the maximum (the spec's own min <=
  // max is validated): the schedule asks for that capacity explicitly, so
  // it raises the maximum (docs/scaling.md).
  if (max_r < min_r) max_r = min_r;
  if (config_.predictive) {
    const absl::Duration look =
        config_.predictive_lookahead > absl::ZeroDuration()
            ? config_.predictive_lookahead
            : start_duration_ + config_.tick;
    last_lookahead_ = look;
    last_predicted_ = predictor_.PredictMax(now, look);
    // A prediction never overrides maxReplicas.
    const int32_t pods = static_cast<int32_t>(
        std::min<double>(kpa_.PodsFor(last_predicted_), max_r));
    if (pods > min_r) {
      min_r = pods;
      bound_cause = Cause::kPredicted;
    }
  }

  Cause cause = Cause::kMetric;
  int32_t desired = 0;
  switch (config_.algorithm) {
    case Algorithm::kKpa:
      desired = DecideKpa(now, eval, &cause);
      break;
    case Algorithm::kTidal:
      desired = DecideTidal(now, eval, &cause);
      break;
    case Algorithm::kHpa:
      desired = DecideHpa(now, eval, min_r, max_r, &cause);
      break;
    case Algorithm::kKeepAlive:
      desired = DecideKeepAlive(eval, &cause);
      break;
  }
  // Figures missing from a gateway: what the scaler saw understates the
  // traffic by an unknown amount, so it never scales down on it.
  const int32_t hold = std::max(current_, last_decided_);
  if (metrics_unknown_ && desired < hold &&
      (config_.metric == Metric::kConcurrency ||
       config_.metric == Metric::kRps)) {
    desired = hold;
    cause = Cause::kUnknown;
  }
  if (!initial_reached_ && ready_ >= config_.initial_scale)
    initial_reached_ = true;
  if (!initial_reached_ && desired < config_.initial_scale) {
    desired = config_.initial_scale;
    cause = Cause::kInitial;
  }
  if (desired < min_r) {
    desired = min_r;
    cause = bound_cause;
  }
  if (desired > max_r) {
    desired = max_r;
    cause = Cause::kMax;
  }
  // A user's `behavior` (HPA's stabilization windows and Pods/Percent
  // policies) also binds tidal and kpa; hpa applied it already. Scaling from
  // zero is the activator's path and is never held back.
  if (config_.user_behavior && config_.algorithm != Algorithm::kHpa &&
      current_ > 0) {
    behavior_wanted_ = desired;
    const int32_t held =
        behavior_.Normalize(now, desired, current_, min_r, max_r);
    if (held != desired) {
      desired = held;
      cause = Cause::kBehavior;
    }
  }

  last_decided_ = desired;
  Decision d;
  d.desired_replicas = desired;
  d.current_replicas = current_;
  d.metric = config_.metric;
  const bool per_instance =
      config_.metric == Metric::kCpu || config_.metric == Metric::kMemory;
  d.value = per_instance ? last_stable_ / std::max(1, ready_) : last_stable_;
  d.target = config_.TargetValue();
  d.panic = last_panic_;
  if (sb != nullptr) d.active_schedules = sb->active;
  d.min_replicas = min_r;
  d.max_replicas = max_r == std::numeric_limits<int32_t>::max() ? 0 : max_r;
  if (desired != current_ || last_reason_.empty()) {
    last_reason_ = Reason(cause, current_, desired, min_r, max_r, sb);
  }
  d.reason = last_reason_;
  return d;
}

std::string AppScaler::Reason(Cause cause, int32_t from, int32_t to,
                              int32_t min_r, int32_t max_r,
                              const ScheduleTracker::Bounds* sb) const {
  const std::string arrow = absl::StrCat(": ", from, " → ", to);
  const char* metric = MetricName(config_.metric);
  const bool per_instance =
      config_.metric == Metric::kCpu || config_.metric == Metric::kMemory;
  const double value =
      per_instance ? last_stable_ / std::max(1, ready_) : last_stable_;
  switch (cause) {
    case Cause::kMetric:
      return absl::StrCat(
          metric, " ", Num(value), to >= from ? " over" : " under", " target ",
          Num(config_.TargetValue()), " per instance",
          last_burst_ ? absl::StrCat(" (burst: ", Num(last_burst_value_),
                                     " in the last ", kBurstSeconds, "s)")
                      : "",
          last_panic_ ? " (panic)" : "", arrow);
    case Cause::kNoData:
      return absl::StrCat("no ", metric, " data yet", arrow);
    case Cause::kUnknown:
      return absl::StrCat(metric,
                          " unknown (a gateway's figures are missing): "
                          "no scale-down",
                          arrow);
    case Cause::kActiveWindow:
      return absl::StrCat("no traffic, active for less than the stable window ",
                          absl::FormatDuration(config_.stable_window), arrow);
    case Cause::kGrace:
      return absl::StrCat("no traffic, within the scale-to-zero grace period ",
                          absl::FormatDuration(config_.scale_to_zero_grace),
                          arrow);
    case Cause::kIdle:
      return absl::StrCat(
          "idle",
          last_idle_s_ > 0 ? absl::StrCat(" for ", last_idle_s_, "s") : "",
          IdleHeld(), arrow);
    case Cause::kKeepWarm:
      return absl::StrCat("keep warm: idle ", last_idle_s_,
                          "s within the keep-alive window", IdleHeld(), arrow);
    case Cause::kPrewarm:
      return absl::StrCat("pre-warm: idle ", last_idle_s_,
                          "s, next request expected after ",
                          idle_.policy().prewarm_s, "s", IdleHeld(), arrow);
    case Cause::kInitial:
      return absl::StrCat("initial scale ", config_.initial_scale, arrow);
    case Cause::kMin:
      return absl::StrCat("minReplicas ", min_r, arrow);
    case Cause::kMax:
      return absl::StrCat("maxReplicas ", max_r, arrow);
    case Cause::kSchedule:
      return absl::StrCat("schedule ", sb ? absl::StrJoin(sb->active, ",") : "",
                          " min ", min_r, arrow);
    case Cause::kPredicted:
      return absl::StrCat("predicted ", metric, " ", Num(last_predicted_),
                          " within ", absl::FormatDuration(last_lookahead_),
                          arrow);
    case Cause::kTolerance:
      return absl::StrCat(metric, " ", Num(value),
                          " within tolerance of target ",
                          Num(config_.TargetValue()), arrow);
    case Cause::kBehavior:
      return absl::StrCat(metric, " ", Num(value), " wants ", behavior_wanted_,
                          "; held by behavior.",
                          behavior_wanted_ > from ? "scaleUp" : "scaleDown",
                          arrow);
  }
  return absl::StrCat("scale", arrow);
}

std::string AppScaler::IdleHeld() const {
  switch (idle_held_) {
    case IdleHold::kNone:
      return "";
    case IdleHold::kPanic:
      return " (held: no scale-down while panicking)";
    case IdleHold::kRate:
      return absl::StrCat(" (held: maxScaleDownRate ",
                          Num(config_.max_scale_down_rate), ")");
    case IdleHold::kDelay:
      return absl::StrCat(" (held: scaleDownDelay ",
                          absl::FormatDuration(config_.scale_down_delay), ")");
  }
  return "";
}

std::string AppScaler::SaveState() const {
  return absl::StrCat(
      "tidal-scaler-v1\nstart_ms=", absl::ToInt64Milliseconds(start_duration_),
      "\nidle=", idle_.Serialize(), "\npred=", predictor_.Serialize(), "\n");
}

absl::Status AppScaler::RestoreState(std::string_view state_in) {
  absl::string_view state(state_in.data(), state_in.size());
  std::vector<absl::string_view> lines =
      absl::StrSplit(state, '\n', absl::SkipEmpty());
  if (lines.empty() || lines[0] != "tidal-scaler-v1") {
    return absl::InvalidArgumentError(
        "scaler state: missing tidal-scaler-v1 header");
  }
  IdleHistogram idle;
  DailyPredictor pred;
  int64_t start_ms = absl::ToInt64Milliseconds(start_duration_);
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(lines[i], absl::MaxSplits('=', 1));
    if (kv.first == "start_ms") {
      if (!absl::SimpleAtoi(kv.second, &start_ms) || start_ms < 0) {
        return absl::InvalidArgumentError("scaler state: bad start_ms");
      }
    } else if (kv.first == "idle") {
      RETURN_IF_ERROR(
          idle.Parse(std::string_view(kv.second.data(), kv.second.size())));
    } else if (kv.first == "pred") {
      RETURN_IF_ERROR(
          pred.Parse(std::string_view(kv.second.data(), kv.second.size())));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("scaler state: unknown key ", kv.first));
    }
  }
  idle_ = std::move(idle);
  predictor_ = std::move(pred);
  start_duration_ = absl::Milliseconds(start_ms);
  return absl::OkStatus();
}

}  // namespace tidal::scaler
