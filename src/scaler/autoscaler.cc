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

KpaParams MakeKpaParams(const ScalerConfig& c, const AppScalerOptions& o,
                        bool reachable = true) {
  KpaParams p;
  p.reachable = reachable;
  p.target_value = c.TargetValue();
  p.panic_threshold = c.panic_threshold / 100.0;
  p.max_scale_up_rate = c.max_scale_up_rate;
  p.max_scale_down_rate = c.max_scale_down_rate;
  p.stable_window = c.stable_window;
  p.scale_down_delay = c.scale_down_delay;
  p.activation_scale = c.activation_scale;
  if (c.algorithm == Algorithm::kTidal && c.metric == Metric::kConcurrency &&
      o.tidal_wait_sizing) {
    p.per_pod = c.target;
    if (c.target_wait_p99 != absl::InfiniteDuration())
      p.wait_s = absl::ToDoubleSeconds(c.target_wait_p99);
    p.wait_eps = 0.01;
  }
  return p;
}

std::string Num(double v) { return absl::StrFormat("%.4g", v); }

HpaTolerances HpaTolerancesOf(const ScalerConfig& c) {
  HpaTolerances t;
  t.down = c.scale_down_tolerance;
  t.up = c.scale_up_tolerance;
  return t;
}

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
      hpa_(config_.scale_up, config_.scale_down, HpaTolerancesOf(config_),
           !config_.user_behavior),
      behavior_(config_.user_scale_up, config_.user_scale_down,
                HpaTolerancesOf(config_)),
      stable_(Seconds(config_.stable_window)),
      panic_(Seconds(config_.PanicWindow())),
      hpa_window_(Seconds(config_.tick)),
      conc_traffic_(Seconds(config_.stable_window)),
      req_traffic_(Seconds(config_.stable_window)),
      schedules_(&config_.schedules),
      ready_(opts.ready_at_start),
      current_(opts.current_at_start),
      start_duration_(opts.start_duration),
      active_since_(now) {
  last_traffic_end_ = absl::ToUnixSeconds(now);
}

absl::Status AppScaler::Update(const tidal::v1::Scaling& spec,
                               const AppScalerOptions& opts) {
  ASSIGN_OR_RETURN(ScalerConfig c,
                   ResolveConfig(spec, opts.container_concurrency));
  if (c.algorithm != config_.algorithm) {
    return absl::FailedPreconditionError(absl::StrCat(
        "scaling.algorithm: ", AlgorithmName(config_.algorithm), " -> ",
        AlgorithmName(c.algorithm), " needs a new scaler"));
  }
  config_ = std::move(c);
  opts_.container_concurrency = opts.container_concurrency;
  opts_.tidal_fallback_keep_alive = opts.tidal_fallback_keep_alive;
  opts_.tidal_min_keep_alive = opts.tidal_min_keep_alive;
  opts_.tidal_wait_sizing = opts.tidal_wait_sizing;
  kpa_.Update(MakeKpaParams(config_, opts_, reachable_));
  hpa_.Update(config_.scale_up, config_.scale_down, HpaTolerancesOf(config_),
              !config_.user_behavior);
  behavior_.Update(config_.user_scale_up, config_.user_scale_down,
                   HpaTolerancesOf(config_), false);
  stable_.Resize(Seconds(config_.stable_window));
  panic_.Resize(Seconds(config_.PanicWindow()));
  hpa_window_.Resize(Seconds(config_.tick));
  conc_traffic_.Resize(Seconds(config_.stable_window));
  req_traffic_.Resize(Seconds(config_.stable_window));
  // The tracker points at config_.schedules, which was replaced.
  schedules_ = ScheduleTracker(&config_.schedules);
  last_reason_.clear();
  last_cause_.clear();
  return absl::OkStatus();
}

void AppScaler::SetReachable(bool reachable) {
  if (reachable == reachable_) return;
  reachable_ = reachable;
  kpa_.Update(MakeKpaParams(config_, opts_, reachable_));
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
  if (traffic && config_.algorithm == Algorithm::kTidal) {
    conc_traffic_.Record(sec, s.concurrency);
    req_traffic_.Record(sec, s.requests);
    // Little's law over the stable window's seconds with traffic: the mean
    // time in the system (service, plus any wait) = concurrency / rate.
    const double rate = req_traffic_.WindowAverage(sec);
    if (rate > 0) {
      kpa_.set_service_time(
          std::max(0.001, conc_traffic_.WindowAverage(sec) / rate));
    }
  }
  if (config_.predictive) predictor_.Add(s.time, value);
  if (config_.metric == Metric::kConcurrency ||
      config_.metric == Metric::kRps) {
    RecordNeed(sec, value);
    RecordValue(sec, value, false);
  }
}

void AppScaler::RecordNeed(int64_t sec, double value) {
  if (config_.algorithm != Algorithm::kKeepAlive &&
      config_.algorithm != Algorithm::kHybrid) {
    return;
  }
  const int32_t need =
      static_cast<int32_t>(std::ceil(value / config_.target - 1e-9));
  keep_alive_.Record(sec, need);
  recent_need_.Record(sec, need);
}

void AppScaler::RecordUtilization(absl::Time second, double cpu_percent,
                                  double memory_percent) {
  if (config_.metric != Metric::kCpu && config_.metric != Metric::kMemory)
    return;
  const double per =
      config_.metric == Metric::kCpu ? cpu_percent : memory_percent;
  const double total = per * std::max(0, ready_);
  const int64_t sec = absl::ToUnixSeconds(second);
  RecordNeed(sec, total);
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
  RecordNeed(sec, waiting_);
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
  // Knative's invalid result: the metric client has nothing for a whole
  // stable window (ErrNoData) or a gateway's figures are missing: the scale
  // is held, never taken to zero on missing data.
  const bool unknown =
      metrics_unknown_ && (config_.metric == Metric::kConcurrency ||
                           config_.metric == Metric::kRps);
  const bool no_data = unknown || stable_.EmptyAt(eval);
  const double stable =
      no_data ? KpaDecider::kNoData : stable_.WindowAverage(eval);
  const double panic =
      no_data ? KpaDecider::kNoData : panic_.WindowAverage(eval);
  KpaDecider::Result r = kpa_.Scale(now, stable, panic, ready_);
  last_panic_ = r.panic;
  if (!r.valid) {
    last_stable_ = 0;
    *cause = unknown ? Cause::kUnknown : Cause::kNoData;
    return current_;
  }
  last_stable_ = stable;
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
  // Burst, under Knative's sizing (tidal_wait_sizing off): when the latest
  // complete seconds alone need at least the panic threshold times the
  // ready instances, size on their peak rather than on the panic-window
  // average (which takes the whole window to take a step in). KPA's panic
  // rules then hold the count: no scale-down while panicking. The default
  // sizing's look-ahead takes a step from its first complete second, and
  // holding a burst's peak for a stable window cost 5-16% more
  // instance-hours on the LLM code trace for no shorter wait anywhere
  // (docs/benchmarks.md).
  last_burst_ = false;
  last_look_ahead_ = false;
  double recent = 0;
  for (int64_t sec = eval - kBurstSeconds + 1; sec <= eval; ++sec)
    recent = std::max(recent, panic_.At(sec));
  if (!opts_.tidal_wait_sizing && recent > panic &&
      kpa_.PodsFor(recent) / std::max(1, ready_) >=
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
    const int32_t ahead = LookAheadPods(now_s, eval);
    last_look_ahead_ = ahead > r.desired;
    return std::max(r.desired, ahead);
  }
  // Idle: the keep-warm policy learned from this app's idle times gives the
  // count (1 or 0) in place of the stable recommendation; KPA's rules still
  // apply to it, so the status never contradicts the count: no scale-down
  // while panicking, at most maxScaleDownRate per tick, and scaleDownDelay.
  IdleHistogram::Policy p = idle_.PaperPolicy();
  // The histogram never unloads sooner than the minimum keep-alive: a
  // pattern whose next request is predicted within it (pre-warm time under
  // it) keeps the instance from the start until the later of the two ends.
  // Unload-and-pre-warm stays for idle times predicted beyond it.
  const int64_t min_keep = absl::ToInt64Seconds(opts_.tidal_min_keep_alive);
  if (p.representative && p.prewarm_s < min_keep) {
    p.keep_alive_s = std::max(p.prewarm_s + p.keep_alive_s, min_keep);
    p.prewarm_s = 0;
  }
  last_prewarm_s_ = p.prewarm_s;
  const int64_t lead = absl::ToInt64Seconds(Lead()) + 1;
  bool warm;
  if (p.representative) {
    warm = last_idle_s_ + lead >= p.prewarm_s &&
           last_idle_s_ <= p.prewarm_s + p.keep_alive_s;
    *cause = warm ? (p.prewarm_s > 0 ? Cause::kPrewarm : Cause::kKeepWarm)
                  : Cause::kIdle;
  } else {
    // No idle time yet, or no pattern in them: a fixed keep-alive (4 h, the
    // histogram's range, unless scaleToZeroGracePeriod says otherwise).
    const absl::Duration ka = opts_.tidal_fallback_keep_alive;
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

int32_t AppScaler::LookAheadPods(int64_t now_s, int64_t eval) {
  look_ahead_load_ = 0;
  const double service = kpa_.service_time();
  const double per_pod = kpa_.params().per_pod;
  if (per_pod <= 0 || service <= 0) return 0;
  // The load one start time (and a tick) from now: the last complete
  // second's concurrency, plus what the arrivals less the completions add
  // over that lead. The arrival rate is the last kRateSeconds' average (one
  // second's count is too noisy to size on at a lead of seconds); the
  // concurrency approaches rate x service exponentially (the mean of an
  // M/G/inf queue after a step), so a lead longer than the service time
  // adds at most about one service time of arrivals, not a lead of them.
  const double lead = absl::ToDoubleSeconds(Lead());
  const double conc = panic_.At(eval);
  double rate = 0;
  for (int64_t sec = eval - kRateSeconds + 1; sec <= eval; ++sec)
    rate += req_traffic_.At(sec);
  rate /= kRateSeconds;
  const double horizon = service * (1 - std::exp(-lead / service));
  const double growth = std::max(0.0, rate - conc / service) * horizon;
  look_ahead_load_ = conc + growth;
  // That load is a mean; the concurrency then is random around it (Poisson
  // for independent arrivals: its variance is its mean), so the count covers
  // kLookAheadSpread standard deviations above it, unless a stricter
  // targetWaitP99 sizes with Erlang C, which counts that spread. Arrivals
  // burstier than Poisson (an LLM's conversations, batch clients) widen it:
  // the arrivals ahead (rate x horizon) count with the index of dispersion
  // of the per-second counts over the stable window (variance / mean, at
  // least 1).
  const double dispersion = req_traffic_.IndexOfDispersion(eval, kRateSeconds);
  const double variance = look_ahead_load_ + (dispersion - 1) * rate * horizon;
  const double spread =
      kpa_.met_by_reaction() ? kLookAheadSpread * std::sqrt(variance) : 0;
  int32_t pods = static_cast<int32_t>(kpa_.PodsFor(look_ahead_load_ + spread));
  // Requests waiting now that neither the starting instances nor the
  // completions within the look-ahead will serve get instances of their own.
  const double slots_coming = (current_ - ready_) * per_pod +
                              ready_ * per_pod * std::min(1.0, lead / service);
  const double extra = waiting_ - slots_coming;
  if (extra > 0) {
    pods = std::max(pods, current_ + static_cast<int32_t>(
                                         std::ceil(extra / per_pod - 1e-9)));
  }
  // Held for a panic window, so a noisy second does not stop instances that
  // the next one needs again.
  up_hold_.Record(now_s, pods);
  return up_hold_.Current(now_s, Seconds(config_.PanicWindow()), pods);
}

int32_t AppScaler::DecideHpa(absl::Time now, int64_t eval, int32_t min_r,
                             int32_t max_r, Cause* cause) {
  *cause = Cause::kMetric;
  // The HPA controller records the count it finds at its first sync, before
  // the bounds and whether metrics answer.
  hpa_.RecordInitial(now, current_);
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
  // The replica calculator over the instances: each ready one with a figure
  // reports the sync period's average; a ready one without (cpu and memory:
  // no sample of its own yet) is a missing pod; starting ones are unready (a
  // pending pod). Values in thousandths, so utilization is floored to an
  // integer percent as Kubernetes does.
  const bool resource =
      config_.metric == Metric::kCpu || config_.metric == Metric::kMemory;
  const int32_t missing = resource ? std::min(missing_, ready_) : 0;
  const double per_pod = ready_ > 0 ? total / ready_ : 0;
  const int64_t request = resource ? 100000 : 0;  // 100% in thousandths
  std::vector<HpaPod> pods;
  pods.reserve(std::max(current_, ready_));
  for (int32_t i = 0; i < ready_ - missing; ++i)
    pods.push_back({HpaPod::kReady, std::llround(per_pod * 1000), request});
  for (int32_t i = 0; i < missing; ++i)
    pods.push_back({HpaPod::kMissing, 0, request});
  for (int32_t i = ready_; i < current_; ++i)
    pods.push_back({HpaPod::kUnready, 0, request});
  const int64_t target = resource ? std::llround(config_.target)
                                  : std::llround(config_.TargetValue() * 1000);
  const HpaReplicas r = resource ? hpa_.ResourceReplicas(pods, current_, target)
                                 : hpa_.PlainReplicas(pods, current_, target);
  if (!r.ok) {
    // No ready instance reported: the controller keeps the count.
    *cause = Cause::kNoData;
    return current_;
  }
  if (r.replicas == current_ &&
      hpa_.tolerances().Within(static_cast<double>(r.usage) / target))
    *cause = Cause::kTolerance;
  // The scale event is stored by Decide from the count it settles on.
  return hpa_.Normalize(now, r.replicas, current_, min_r, max_r, false);
}

int32_t AppScaler::DecideKeepAlive(int64_t eval, Cause* cause) {
  last_stable_ = stable_.empty() ? 0 : stable_.WindowAverage(eval);
  int32_t d =
      keep_alive_.Current(eval, absl::ToInt64Seconds(config_.keep_alive), 0);
  if (waiting_ > 0) d = std::max(d, 1);
  *cause = d > 0 ? Cause::kKeepWarm : Cause::kIdle;
  return d;
}

int32_t AppScaler::DecideHybrid(absl::Time now, int64_t eval, Cause* cause) {
  last_stable_ = stable_.empty() ? 0 : stable_.WindowAverage(eval);
  const IdleHistogram::Policy p = idle_.PaperPolicy();
  last_prewarm_s_ = p.prewarm_s;
  const int64_t now_s = absl::ToUnixSeconds(now);
  const bool busy = waiting_ > 0 || (seen_traffic_ && last_traffic_end_ > eval);
  last_idle_s_ = busy ? 0 : now_s - last_traffic_end_;
  int32_t d;
  if (p.prewarm_s == 0) {
    // Kept warm for the keep-alive window after the last second needing it.
    d = keep_alive_.Current(eval, p.keep_alive_s, 0);
    *cause = d > 0 ? Cause::kKeepWarm : Cause::kIdle;
  } else {
    // Unloaded after the invocations end, loaded again ahead of the pre-warm
    // time (by the start time and a tick, as tidal) for the keep-alive.
    d = recent_need_.Current(eval, absl::ToInt64Seconds(config_.tick), 0);
    const int64_t lead = absl::ToInt64Seconds(Lead()) + 1;
    *cause = d > 0 ? Cause::kMetric : Cause::kIdle;
    if (!busy && seen_traffic_ && last_idle_s_ + lead >= p.prewarm_s &&
        last_idle_s_ <= p.prewarm_s + p.keep_alive_s && d < 1) {
      d = 1;
      *cause = Cause::kPrewarm;
    }
  }
  if (waiting_ > 0 && d < 1) {
    d = 1;
    *cause = Cause::kMetric;
  }
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
  if (config_.algorithm == Algorithm::kTidal) {
    // A waiting request gets an instance started for it within the start
    // time and a tick: the default wait target, met without headroom.
    const double reaction = absl::ToDoubleSeconds(Lead());
    kpa_.set_reaction_time(reaction);
    if (config_.target_wait_p99 == absl::InfiniteDuration())
      kpa_.set_wait_target(reaction);
  }

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
            : Lead();
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
    case Algorithm::kHybrid:
      desired = DecideHybrid(now, eval, &cause);
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

  // reconcileAutoscaler stores the scale event of every rescale, to the
  // count it sets, whether the metrics or the bounds decided it.
  if (config_.algorithm == Algorithm::kHpa && desired != current_)
    hpa_.Rescaled(now, current_, desired);
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
  // The reason changes with the count; a hold on missing data (kpa's invalid
  // result, unknown figures) says so while it lasts.
  const bool held = desired == current_ &&
                    (cause == Cause::kNoData || cause == Cause::kUnknown);
  if (desired != current_ || last_reason_.empty() || held) {
    last_cause_ = Reason(cause, current_, desired, min_r, max_r, sb);
    last_reason_ = absl::StrCat(last_cause_, ": ", current_, " → ", desired);
  }
  d.reason = last_reason_;
  d.cause = last_cause_;
  return d;
}

std::string AppScaler::Reason(Cause cause, int32_t from, int32_t to,
                              int32_t min_r, int32_t max_r,
                              const ScheduleTracker::Bounds* sb) const {
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
          last_look_ahead_
              ? absl::StrCat(" (look-ahead: ", Num(look_ahead_load_), " in ",
                             Num(absl::ToDoubleSeconds(Lead())), "s)")
              : "",
          last_panic_ ? " (panic)" : "");
    case Cause::kNoData:
      return absl::StrCat("no ", metric, " data",
                          stable_.empty() ? " yet" : " (held)");
    case Cause::kUnknown:
      return absl::StrCat(metric,
                          " unknown (a gateway's figures are missing): "
                          "no scale-down");
    case Cause::kActiveWindow:
      return absl::StrCat("no traffic, active for less than the stable window ",
                          absl::FormatDuration(config_.stable_window));
    case Cause::kGrace:
      return absl::StrCat("no traffic, within the scale-to-zero grace period ",
                          absl::FormatDuration(config_.scale_to_zero_grace));
    case Cause::kIdle:
      return absl::StrCat(
          "idle",
          last_idle_s_ > 0 ? absl::StrCat(" for ", last_idle_s_, "s") : "",
          IdleHeld());
    case Cause::kKeepWarm:
      return absl::StrCat("keep warm: idle ", last_idle_s_,
                          "s within the keep-alive window", IdleHeld());
    case Cause::kPrewarm:
      return absl::StrCat("pre-warm: idle ", last_idle_s_,
                          "s, next request expected after ", last_prewarm_s_,
                          "s", IdleHeld());
    case Cause::kInitial:
      return absl::StrCat("initial scale ", config_.initial_scale);
    case Cause::kMin:
      return absl::StrCat("minReplicas ", min_r);
    case Cause::kMax:
      return absl::StrCat("maxReplicas ", max_r);
    case Cause::kSchedule:
      return absl::StrCat("schedule ", sb ? absl::StrJoin(sb->active, ",") : "",
                          " min ", min_r);
    case Cause::kPredicted:
      return absl::StrCat("predicted ", metric, " ", Num(last_predicted_),
                          " within ", absl::FormatDuration(last_lookahead_));
    case Cause::kTolerance:
      return absl::StrCat(metric, " ", Num(value),
                          " within tolerance of target ",
                          Num(config_.TargetValue()));
    case Cause::kBehavior:
      return absl::StrCat(metric, " ", Num(value), " wants ", behavior_wanted_,
                          "; held by behavior.",
                          behavior_wanted_ > from ? "scaleUp" : "scaleDown");
  }
  return "scale";
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
      "\nidle=", idle_.Serialize(), "\npred=", predictor_.Serialize(),
      "\nservice_us=", std::llround(kpa_.service_time() * 1e6), "\n");
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
  int64_t service_us = std::llround(kpa_.service_time() * 1e6);
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(lines[i], absl::MaxSplits('=', 1));
    if (kv.first == "start_ms") {
      if (!absl::SimpleAtoi(kv.second, &start_ms) || start_ms < 0) {
        return absl::InvalidArgumentError("scaler state: bad start_ms");
      }
    } else if (kv.first == "service_us") {
      if (!absl::SimpleAtoi(kv.second, &service_us) || service_us < 0) {
        return absl::InvalidArgumentError("scaler state: bad service_us");
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
  kpa_.set_service_time(service_us / 1e6);
  return absl::OkStatus();
}

}  // namespace tidal::scaler
