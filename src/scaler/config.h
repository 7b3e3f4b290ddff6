#pragma once

// ScalerConfig: a Scaling spec (proto) with every default applied, in the units
// the decision code uses. Built once per spec change; immutable, thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cron.h"
#include "tidal/v1/app.pb.h"

namespace tidal::scaler {

enum class Algorithm { kTidal, kKpa, kHpa, kKeepAlive, kHybrid };
enum class Metric { kConcurrency, kRps, kCpu, kMemory };

const char* AlgorithmName(Algorithm a);
const char* MetricName(Metric m);

// One HPA scaling policy: at most `value` pods or percent per `period`.
struct HpaPolicy {
  enum Type { kPods, kPercent } type = kPods;
  int32_t value = 0;
  absl::Duration period = absl::Seconds(15);
};

// HPA scaling rules for one direction.
struct HpaRules {
  enum Select { kMax, kMin, kDisabled } select = kMax;
  absl::Duration stabilization = absl::ZeroDuration();
  std::vector<HpaPolicy> policies;
  double tolerance = -1;  // hpa: this direction's tolerance; -1: not set
};

// A parsed schedule: cron + zone + duration + overrides.
struct ScheduleSpec {
  std::string name;
  CronSchedule cron;
  absl::TimeZone zone;
  absl::Duration duration = absl::ZeroDuration();
  int32_t min_replicas = -1;  // -1: not set
  int32_t max_replicas = -1;
};

struct ScalerConfig {
  Algorithm algorithm = Algorithm::kTidal;
  Metric metric = Metric::kConcurrency;
  int32_t min_replicas = 0;  // hpa: at least 1
  int32_t max_replicas = 0;  // 0: unbounded
  double target = 100;  // per instance (metric units; percent for cpu/memory)
  double target_utilization =
      70;  // percent of `target` aimed at (concurrency, rps)
  absl::Duration stable_window = absl::Seconds(60);
  double panic_window_percentage = 10;  // of the stable window
  double panic_threshold = 200;         // percent of the target
  double max_scale_up_rate = 1000;
  double max_scale_down_rate = 2;
  absl::Duration scale_down_delay = absl::ZeroDuration();
  absl::Duration scale_to_zero_grace = absl::Seconds(30);
  int32_t initial_scale = 1;
  int32_t activation_scale =
      1;                   // Knative's activation-scale (not in the spec yet)
  double tolerance = 0.1;  // hpa
  // hpa: the usage-ratio band [1 - down, 1 + up] that keeps the count:
  // behavior.scaleUp/scaleDown.tolerance, else `tolerance`.
  double scale_up_tolerance = 0.1;
  double scale_down_tolerance = 0.1;
  HpaRules scale_up;  // hpa: spec.behavior over HPA's defaults
  HpaRules scale_down;
  // tidal, kpa, keepalive: spec.behavior over no restriction at all.
  HpaRules user_scale_up;
  HpaRules user_scale_down;
  bool user_behavior = false;  // spec.behavior was set
  std::vector<ScheduleSpec> schedules;
  bool predictive = false;
  absl::Duration predictive_lookahead =
      absl::ZeroDuration();                       // 0: measured start time
  absl::Duration tick = absl::Seconds(2);         // tidal: 1s; hpa: 15s
  absl::Duration keep_alive = absl::Minutes(10);  // algorithm keepalive
  // tidal: busy apps are sized so that P(wait > this) <= 1% (Erlang C);
  // infinite (unset): the app's measured start time plus a tick, which the
  // reaction to waiting requests meets without headroom.
  absl::Duration target_wait_p99 = absl::InfiniteDuration();

  // The per-instance value the windows are compared against: target *
  // utilization for concurrency and rps, target itself for cpu and memory.
  double TargetValue() const;
  absl::Duration PanicWindow() const;
};

// Resolves `spec` (already validated or not: bad values are InvalidArgument).
// `container_concurrency` is the template's per-instance request limit (0 =
// unlimited); it is the default concurrency target when set, else 100.
absl::StatusOr<ScalerConfig> ResolveConfig(const tidal::v1::Scaling& spec,
                                           int32_t container_concurrency = 0);

}  // namespace tidal::scaler
