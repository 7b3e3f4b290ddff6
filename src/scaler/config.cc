#include "scaler/config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tidal::scaler {

const char* AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kTidal:
      return "tidal";
    case Algorithm::kKpa:
      return "kpa";
    case Algorithm::kHpa:
      return "hpa";
    case Algorithm::kKeepAlive:
      return "keepalive";
    case Algorithm::kHybrid:
      return "hybrid";
  }
  return "?";
}

const char* MetricName(Metric m) {
  switch (m) {
    case Metric::kConcurrency:
      return "concurrency";
    case Metric::kRps:
      return "rps";
    case Metric::kCpu:
      return "cpu";
    case Metric::kMemory:
      return "memory";
  }
  return "?";
}

double ScalerConfig::TargetValue() const {
  if (metric == Metric::kCpu || metric == Metric::kMemory) return target;
  return target * target_utilization / 100.0;
}

absl::Duration ScalerConfig::PanicWindow() const {
  // Knative: the panic window is a percentage of the stable window, at least
  // one second (its bucket granularity).
  absl::Duration d = stable_window * (panic_window_percentage / 100.0);
  d = absl::Floor(d, absl::Seconds(1));
  return std::max(d, absl::Seconds(1));
}

namespace {

absl::Status Invalid(const std::string& field, const std::string& msg) {
  return absl::InvalidArgumentError(absl::StrCat("scaling.", field, ": ", msg));
}

absl::StatusOr<HpaRules> ResolveRules(const tidal::v1::HPAScalingRules& r,
                                      HpaRules defaults,
                                      const std::string& field) {
  HpaRules out = defaults;
  if (r.has_stabilization_window_seconds()) {
    if (r.stabilization_window_seconds() < 0 ||
        r.stabilization_window_seconds() > 3600) {
      return Invalid(field + ".stabilizationWindowSeconds",
                     "must be within 0..3600");
    }
    out.stabilization = absl::Seconds(r.stabilization_window_seconds());
  }
  if (!r.select_policy().empty()) {
    if (r.select_policy() == "Max") {
      out.select = HpaRules::kMax;
    } else if (r.select_policy() == "Min") {
      out.select = HpaRules::kMin;
    } else if (r.select_policy() == "Disabled") {
      out.select = HpaRules::kDisabled;
    } else {
      return Invalid(field + ".selectPolicy", "must be Max, Min or Disabled");
    }
  }
  if (r.has_tolerance()) {
    if (!(r.tolerance() >= 0 && r.tolerance() <= 10)) {
      return Invalid(field + ".tolerance", "must be within 0..10");
    }
    out.tolerance = r.tolerance();
  }
  if (r.policies_size() > 0) {
    out.policies.clear();
    for (int i = 0; i < r.policies_size(); ++i) {
      const auto& p = r.policies(i);
      std::string pf = absl::StrCat(field, ".policies[", i, "]");
      HpaPolicy hp;
      if (p.type() == "Pods") {
        hp.type = HpaPolicy::kPods;
      } else if (p.type() == "Percent") {
        hp.type = HpaPolicy::kPercent;
      } else {
        return Invalid(pf + ".type", "must be Pods or Percent");
      }
      if (p.value() <= 0) return Invalid(pf + ".value", "must be > 0");
      if (p.period_seconds() <= 0 || p.period_seconds() > 1800) {
        return Invalid(pf + ".periodSeconds", "must be within 1..1800");
      }
      hp.value = p.value();
      hp.period = absl::Seconds(p.period_seconds());
      out.policies.push_back(hp);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ScalerConfig> ResolveConfig(const tidal::v1::Scaling& spec,
                                           int32_t container_concurrency) {
  ScalerConfig c;
  if (spec.algorithm().empty() || spec.algorithm() == "tidal") {
    c.algorithm = Algorithm::kTidal;
  } else if (spec.algorithm() == "kpa") {
    c.algorithm = Algorithm::kKpa;
  } else if (spec.algorithm() == "hpa") {
    c.algorithm = Algorithm::kHpa;
  } else if (spec.algorithm() == "keepalive") {
    c.algorithm = Algorithm::kKeepAlive;
  } else if (spec.algorithm() == "hybrid") {
    c.algorithm = Algorithm::kHybrid;
  } else {
    return Invalid("algorithm", "must be tidal, kpa, hpa, keepalive or hybrid");
  }
  if (spec.metric().empty() || spec.metric() == "concurrency") {
    c.metric = Metric::kConcurrency;
    c.target = container_concurrency > 0 ? container_concurrency : 100;
  } else if (spec.metric() == "rps") {
    c.metric = Metric::kRps;
    c.target = 200;
  } else if (spec.metric() == "cpu") {
    c.metric = Metric::kCpu;
    c.target = 80;
  } else if (spec.metric() == "memory") {
    c.metric = Metric::kMemory;
    c.target = 80;
  } else {
    return Invalid("metric", "must be concurrency, rps, cpu or memory");
  }
  if (spec.has_target()) {
    if (!(spec.target() > 0)) return Invalid("target", "must be > 0");
    c.target = spec.target();
    // Knative: the concurrency target never exceeds the hard limit.
    if (c.metric == Metric::kConcurrency && container_concurrency > 0) {
      c.target = std::min(c.target, static_cast<double>(container_concurrency));
    }
  }
  if (spec.has_target_utilization()) {
    double u = spec.target_utilization();
    if (!(u >= 1 && u <= 100))
      return Invalid("targetUtilization", "must be within 1..100");
    c.target_utilization = u;
  }
  if (c.algorithm == Algorithm::kHpa) {
    c.tick = absl::Seconds(15);
    c.min_replicas = 1;
  }
  // Tidal decides every second, so a step in load is acted on within a
  // second of its first complete second (Knative's KPA: 2 s).
  if (c.algorithm == Algorithm::kTidal) c.tick = absl::Seconds(1);
  if (spec.has_min_replicas()) {
    if (spec.min_replicas() < 0) return Invalid("minReplicas", "must be >= 0");
    c.min_replicas = spec.min_replicas();
    if (c.algorithm == Algorithm::kHpa)
      c.min_replicas = std::max(1, c.min_replicas);
  }
  if (spec.has_max_replicas()) {
    if (spec.max_replicas() < 0) return Invalid("maxReplicas", "must be >= 0");
    c.max_replicas = spec.max_replicas();
    if (c.max_replicas > 0 && c.max_replicas < c.min_replicas) {
      return Invalid("minReplicas",
                     absl::StrCat("must be <= maxReplicas (", c.min_replicas,
                                  " > ", c.max_replicas, ")"));
    }
  }
  if (spec.has_stable_window_ms()) {
    if (spec.stable_window_ms() < 6000 || spec.stable_window_ms() > 3600000) {
      return Invalid("stableWindow", "must be within 6s..1h");
    }
    c.stable_window = absl::Seconds(spec.stable_window_ms() / 1000);
  }
  if (spec.has_panic_window_percentage()) {
    double p = spec.panic_window_percentage();
    if (!(p >= 1 && p <= 100))
      return Invalid("panicWindowPercentage", "must be within 1..100");
    c.panic_window_percentage = p;
  }
  if (spec.has_panic_threshold()) {
    double p = spec.panic_threshold();
    if (!(p >= 110 && p <= 1000))
      return Invalid("panicThreshold", "must be within 110..1000");
    c.panic_threshold = p;
  }
  if (spec.has_max_scale_up_rate()) {
    if (!(spec.max_scale_up_rate() > 1))
      return Invalid("maxScaleUpRate", "must be > 1");
    c.max_scale_up_rate = spec.max_scale_up_rate();
  }
  if (spec.has_max_scale_down_rate()) {
    if (!(spec.max_scale_down_rate() > 1))
      return Invalid("maxScaleDownRate", "must be > 1");
    c.max_scale_down_rate = spec.max_scale_down_rate();
  }
  if (spec.has_scale_down_delay_ms()) {
    if (spec.scale_down_delay_ms() < 0 ||
        spec.scale_down_delay_ms() > 3600000) {
      return Invalid("scaleDownDelay", "must be within 0..1h");
    }
    c.scale_down_delay = absl::Milliseconds(spec.scale_down_delay_ms());
  }
  if (spec.has_scale_to_zero_grace_period_ms()) {
    if (spec.scale_to_zero_grace_period_ms() < 0) {
      return Invalid("scaleToZeroGracePeriod", "must be >= 0");
    }
    c.scale_to_zero_grace =
        absl::Milliseconds(spec.scale_to_zero_grace_period_ms());
    c.keep_alive = c.scale_to_zero_grace;
  }
  if (spec.has_initial_scale()) {
    if (spec.initial_scale() < 0)
      return Invalid("initialScale", "must be >= 0");
    c.initial_scale = spec.initial_scale();
  }
  if (spec.has_tolerance()) {
    if (!(spec.tolerance() >= 0 && spec.tolerance() < 1)) {
      return Invalid("tolerance", "must be within 0..1");
    }
    c.tolerance = spec.tolerance();
  }
  if (spec.has_target_wait_p99_ms()) {
    if (spec.target_wait_p99_ms() < 0 || spec.target_wait_p99_ms() > 600000) {
      return Invalid("targetWaitP99", "must be within 0s..10m");
    }
    c.target_wait_p99 = absl::Milliseconds(spec.target_wait_p99_ms());
  }
  if (spec.has_tick_ms()) {
    // The same range as the API's validation (src/api/spec.cc).
    if (spec.tick_ms() < 100 || spec.tick_ms() > 60000) {
      return Invalid("tick", "must be within 100ms..1m");
    }
    c.tick = absl::Milliseconds(spec.tick_ms());
  }

  // HPA default behavior (k8s.io/api autoscaling/v2 defaults).
  HpaRules up;
  up.stabilization = absl::ZeroDuration();
  up.select = HpaRules::kMax;
  up.policies = {{HpaPolicy::kPercent, 100, absl::Seconds(15)},
                 {HpaPolicy::kPods, 4, absl::Seconds(15)}};
  HpaRules down;
  down.stabilization = absl::Seconds(300);
  down.select = HpaRules::kMax;
  down.policies = {{HpaPolicy::kPercent, 100, absl::Seconds(15)}};

  c.user_behavior = spec.has_behavior();
  ASSIGN_OR_RETURN(c.scale_up, ResolveRules(spec.behavior().scale_up(), up,
                                            "behavior.scaleUp"));
  ASSIGN_OR_RETURN(c.scale_down, ResolveRules(spec.behavior().scale_down(),
                                              down, "behavior.scaleDown"));
  c.scale_up_tolerance =
      c.scale_up.tolerance >= 0 ? c.scale_up.tolerance : c.tolerance;
  c.scale_down_tolerance =
      c.scale_down.tolerance >= 0 ? c.scale_down.tolerance : c.tolerance;
  // tidal, kpa, keepalive: a `behavior` the user sets applies on top of the
  // algorithm's own decision, and what it leaves out restricts nothing (no
  // stabilization, no rate limit).
  HpaRules free_up;
  free_up.policies = {{HpaPolicy::kPods, 1 << 30, absl::Seconds(1)}};
  HpaRules free_down;
  free_down.policies = {{HpaPolicy::kPercent, 100, absl::Seconds(1)}};
  ASSIGN_OR_RETURN(c.user_scale_up, ResolveRules(spec.behavior().scale_up(),
                                                 free_up, "behavior.scaleUp"));
  ASSIGN_OR_RETURN(c.user_scale_down,
                   ResolveRules(spec.behavior().scale_down(), free_down,
                                "behavior.scaleDown"));

  for (int i = 0; i < spec.schedules_size(); ++i) {
    const auto& s = spec.schedules(i);
    std::string f = absl::StrCat("schedules[", i, "]");
    ScheduleSpec ss;
    ss.name = s.name().empty() ? absl::StrCat("schedule-", i) : s.name();
    auto cron = ParseCron(s.cron());
    if (!cron.ok())
      return Invalid(f + ".cron", std::string(cron.status().message()));
    ss.cron = *cron;
    auto zone = LoadZone(s.time_zone());
    if (!zone.ok())
      return Invalid(f + ".timeZone", std::string(zone.status().message()));
    ss.zone = *zone;
    if (s.duration_ms() <= 0) return Invalid(f + ".duration", "must be > 0");
    ss.duration = absl::Milliseconds(s.duration_ms());
    if (s.has_min_replicas()) {
      if (s.min_replicas() < 0)
        return Invalid(f + ".minReplicas", "must be >= 0");
      ss.min_replicas = s.min_replicas();
    }
    if (s.has_max_replicas()) {
      if (s.max_replicas() < 0)
        return Invalid(f + ".maxReplicas", "must be >= 0");
      // 0: no cap (as the spec's maxReplicas), not "force zero replicas".
      if (s.max_replicas() > 0) ss.max_replicas = s.max_replicas();
    }
    if (!s.has_min_replicas() && !s.has_max_replicas()) {
      return Invalid(f, "sets neither minReplicas nor maxReplicas");
    }
    c.schedules.push_back(std::move(ss));
  }
  c.predictive = spec.predictive().enabled();
  if (spec.predictive().has_lookahead_ms()) {
    if (spec.predictive().lookahead_ms() < 0) {
      return Invalid("predictive.lookahead", "must be >= 0");
    }
    c.predictive_lookahead =
        absl::Milliseconds(spec.predictive().lookahead_ms());
  }
  return c;
}

}  // namespace tidal::scaler
