#pragma once

// AppScaler: one app's autoscaler, a pure deterministic state machine over an
// injected time. The controller (or the simulator) feeds it one-second metric
// samples and the instance counts, and asks Decide(now) every tick; the same
// inputs always give the same decisions. Algorithms: `tidal` (default), `kpa`
// (Knative KPA), `hpa` (Kubernetes HPA), and two baselines: `keepalive`
// (fixed keep-alive) and `hybrid` (the hybrid-histogram policy of Shahrad et
// al., ATC'20). Not thread-safe: one owner calls it (the controller serializes
// per app key).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scaler/config.h"
#include "scaler/hpa.h"
#include "scaler/idle_histogram.h"
#include "scaler/kpa.h"
#include "scaler/metrics_source.h"
#include "scaler/predictor.h"
#include "scaler/schedule.h"
#include "scaler/windows.h"
#include "tidal/v1/app.pb.h"

namespace tidal::scaler {

// One scaling decision.
struct Decision {
  int32_t desired_replicas = 0;
  int32_t current_replicas = 0;  // what SetInstances() last said
  Metric metric = Metric::kConcurrency;
  double value = 0;   // stable-window value: total for concurrency/rps, per
                      // instance for cpu/memory
  double target = 0;  // per instance (after utilization)
  bool panic = false;
  std::string reason;  // "concurrency 95 over target 7 per instance: 10 → 14"
  // The reason without the counts ("concurrency 95 over target 7 per
  // instance"): what an event that names its own counts adds.
  std::string cause;
  std::vector<std::string> active_schedules;
  int32_t min_replicas =
      0;  // effective, after schedules, prediction and keep-warm
  int32_t max_replicas = 0;  // effective; 0 = unbounded
  bool scaled() const { return desired_replicas != current_replicas; }
};

struct AppScalerOptions {
  int32_t container_concurrency = 0;  // template.concurrency
  int32_t ready_at_start = 0;  // ready instances when the scaler is (re)created
  int32_t current_at_start = 0;
  absl::Duration start_duration = absl::Seconds(1);  // until measured
  // Tidal: keep-alive while an app's idle times show no pattern (none yet,
  // or spread evenly): the histogram's range, as the hybrid-histogram
  // policy.
  absl::Duration tidal_fallback_keep_alive = absl::Hours(4);
  // Tidal: the shortest keep-alive of an idle app's last instance. The
  // histogram can lengthen it or, when it predicts the next request later
  // than this, unload at once and pre-warm; never unload sooner. The fixed
  // keep-alive of function platforms (the `keepalive` baseline's 10 min),
  // unless scaleToZeroGracePeriod says otherwise.
  absl::Duration tidal_min_keep_alive = absl::Minutes(10);
  // Tidal: size busy apps for targetWaitP99 (Erlang C over the measured
  // service time); false: Knative's sizing (target x utilization).
  bool tidal_wait_sizing = true;
};

class AppScaler {
 public:
  // Tidal: a burst is judged on the peak of this many latest complete
  // seconds (a step that starts mid-second fills only the second after).
  static constexpr int kBurstSeconds = 2;
  // Tidal's look-ahead: the arrival rate is averaged over this many latest
  // complete seconds, and the count covers the predicted load plus this
  // many standard deviations of its spread (Poisson, widened by the
  // arrivals' index of dispersion over the stable window). Chosen on the
  // traces of bench/scaler_traces (docs/benchmarks.md gives the scan).
  static constexpr int kRateSeconds = 10;
  static constexpr double kLookAheadSpread = 1.2;

  // InvalidArgument when `spec` is invalid.
  static absl::StatusOr<std::unique_ptr<AppScaler>> Create(
      const tidal::v1::Scaling& spec, absl::Time now,
      const AppScalerOptions& opts = {});
  AppScaler(ScalerConfig config, absl::Time now, const AppScalerOptions& opts);
  AppScaler(const AppScaler&) = delete;
  AppScaler& operator=(const AppScaler&) = delete;

  // One complete second of the app's traffic, in time order. A sample for the
  // second already recorded by a wake-up (SetWaiting) replaces it.
  void Record(const MetricSample& sample);
  // Average utilization per ready instance over one second, in percent of the
  // instance's request (cpu) or limit (memory).
  void RecordUtilization(absl::Time second, double cpu_percent,
                         double memory_percent);
  // Instance counts: ready (serving) and current (ready + starting).
  void SetInstances(int32_t ready, int32_t current);
  // Metrics cpu and memory: how many of the ready instances had no figure
  // of their own at the latest sampling (CPU: a first sample, which gives no
  // rate yet). RecordUtilization's averages are over the others. hpa counts
  // these as the replica calculator's missing pods (0% on a scale-up, 100%
  // or the target on a scale-down); the other algorithms ignore them.
  void SetMissing(int32_t missing) { missing_ = missing > 0 ? missing : 0; }
  // Requests the gateway holds because no instance is ready (the activator).
  // With requests waiting and no instance, Decide() scales from zero at once.
  void SetWaiting(absl::Time now, int32_t waiting);
  // Whether the request figures are incomplete now (a gateway's reports are
  // missing, MetricsSource::Incomplete): while they are, Decide() does not
  // go below the current instances (or its previous decision) on concurrency or
  // rps (scale-ups and the maxReplicas bound still apply). Metrics cpu and
  // memory are not affected.
  void SetMetricsUnknown(bool unknown) { metrics_unknown_ = unknown; }
  // A measured instance start time (start to ready); feeds pre-warming.
  void ObserveStartDuration(absl::Duration d);

  Decision Decide(absl::Time now);

  // A changed spec for the same algorithm, applied without re-creating the
  // scaler (Knative's Update): the metric windows (resized to the new
  // windows), panic mode, the scale-down delay window and the HPA
  // recommendations carry over. InvalidArgument when `spec` is invalid,
  // FailedPrecondition when it names another algorithm (a new scaler is
  // needed); nothing is changed then. `opts` gives the template's
  // concurrency and the keep-alive rules; its instance counts are ignored.
  absl::Status Update(const tidal::v1::Scaling& spec,
                      const AppScalerOptions& opts);
  // Knative's `reachable`: whether traffic is routed to the app. An
  // unreachable app scales down without maxScaleDownRate or scaleDownDelay
  // (kpa, tidal). tidald routes to every app, so it stays reachable there.
  void SetReachable(bool reachable);

  // The tick period (tidal 1 s; kpa and keepalive 2 s; hpa 15 s).
  absl::Duration tick() const { return config_.tick; }
  const ScalerConfig& config() const { return config_; }

  // Learned state to persist in the store (idle histogram, daily pattern,
  // measured start time): a few KB at most. RestoreState accepts what
  // SaveState produced, InvalidArgument otherwise.
  std::string SaveState() const;
  absl::Status RestoreState(std::string_view state);

 private:
  enum class Cause {
    kMetric,
    kNoData,
    kUnknown,
    kActiveWindow,
    kGrace,
    kIdle,
    kKeepWarm,
    kPrewarm,
    kInitial,
    kMin,
    kMax,
    kSchedule,
    kPredicted,
    kTolerance,
    kBehavior
  };
  int32_t DecideKpa(absl::Time now, int64_t eval, Cause* cause);
  int32_t DecideTidal(absl::Time now, int64_t eval, Cause* cause);
  // How far ahead a decision must look: an instance's start and a tick.
  absl::Duration Lead() const { return start_duration_ + config_.tick; }
  // Tidal, busy: pods for the load one start time ahead and for the
  // requests waiting now.
  int32_t LookAheadPods(int64_t now_s, int64_t eval);
  int32_t DecideHpa(absl::Time now, int64_t eval, int32_t min_r, int32_t max_r,
                    Cause* cause);
  int32_t DecideKeepAlive(int64_t eval, Cause* cause);
  int32_t DecideHybrid(absl::Time now, int64_t eval, Cause* cause);
  void RecordValue(int64_t sec, double value, bool partial);
  // keepalive, hybrid: the pods second `sec` needs (value / target).
  void RecordNeed(int64_t sec, double value);
  // Tidal, idle: what held the count above the keep-warm count.
  enum class IdleHold { kNone, kPanic, kRate, kDelay };
  std::string IdleHeld() const;
  std::string Reason(Cause cause, int32_t from, int32_t to, int32_t min_r,
                     int32_t max_r, const ScheduleTracker::Bounds* sb) const;

  // Replaced only by Update().
  ScalerConfig config_;
  AppScalerOptions opts_;
  bool reachable_ = true;

  KpaDecider kpa_;
  HpaDecider hpa_;
  HpaDecider behavior_;          // a user's behavior over tidal and kpa
  int32_t behavior_wanted_ = 0;  // the decision before behavior held it
  TimedBuckets stable_;
  TimedBuckets panic_;
  TimedBuckets hpa_window_;  // one HPA sync period
  // tidal: concurrency and requests of the seconds with traffic (stable
  // window), for the service time (Little's law: concurrency / rate).
  TimedBuckets conc_traffic_;
  TimedBuckets req_traffic_;
  MaxWindow<int32_t, int64_t> up_hold_;     // tidal: recent look-ahead sizes
  MaxWindow<int32_t, int64_t> keep_alive_;  // keepalive: pods needed per second
  MaxWindow<int32_t, int64_t> recent_need_;  // hybrid: the same, last tick
  IdleHistogram idle_;
  DailyPredictor predictor_;
  ScheduleTracker schedules_;

  int32_t ready_ = 0;
  int32_t current_ = 0;
  int32_t missing_ = 0;  // ready instances without a utilization figure
  int32_t waiting_ = 0;
  bool metrics_unknown_ = false;
  int32_t last_decided_ = 0;     // the previous decision
  bool partial_second_ = false;  // the last bucket came from a wake-up
  bool initial_reached_ = false;
  bool became_active_ = false;
  bool seen_traffic_ = false;
  int64_t last_idle_s_ = 0;
  int64_t last_prewarm_s_ = 0;  // of the idle policy last applied
  double last_predicted_ = 0;
  absl::Duration last_lookahead_;  // of the last prediction
  absl::Duration start_duration_;
  absl::Time active_since_;
  absl::Time inactive_since_ = absl::InfinitePast();
  int64_t last_traffic_end_ =
      0;  // second after the last one with traffic (or creation)
  double last_stable_ = 0;
  bool last_panic_ = false;
  IdleHold idle_held_ = IdleHold::kNone;
  double look_ahead_load_ = 0;    // tidal: the last look-ahead load
  bool last_burst_ = false;       // tidal: the last decision sized on a burst
  double last_burst_value_ = 0;   // the burst's peak (metric units)
  bool last_look_ahead_ = false;  // tidal: the look-ahead set the last count
  std::string last_reason_;
  std::string last_cause_;  // last_reason_ without its counts
};

}  // namespace tidal::scaler
