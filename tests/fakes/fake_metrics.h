#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "scaler/metrics_source.h"

namespace tidal::testing {

// A MetricsSource whose figures the test sets (for the deployer's analysis,
// the scaler and the API's `top`). Thread-safe.
//
//  Stats:   the figures set for (app, revision), else those set for the
//           revision of any app, else zero. The window is ignored.
//  Samples: with a clock, every second after `after` (the last 60 s when
//           `after` is InfinitePast, at most 120 s back) up to the clock's
//           current second, each with the concurrency set and 10 requests
//           per unit of it; without a clock, none.
class FakeMetrics : public MetricsSource {
 public:
  explicit FakeMetrics(Clock* clock = nullptr) : clock_(clock) {}

  std::vector<MetricSample> Samples(const std::string& ns,
                                    const std::string& app, int64_t revision,
                                    absl::Time after) override;
  RequestStats Stats(const std::string& ns, const std::string& app,
                     int64_t revision, absl::Duration window) override;

  // Stats for `revision` of every app.
  void SetStats(int64_t revision, const RequestStats& stats);
  // Stats for `revision` of one app (wins over SetStats).
  void SetAppStats(const std::string& app, int64_t revision,
                   const RequestStats& stats);
  // Shorthand for SetStats: `requests`, `errors` of them 5xx (the rest
  // 2xx), and the p99 latency.
  void Set(int64_t revision, int64_t requests, int64_t errors, double p99_ms);
  // The concurrency Samples reports.
  void set_concurrency(double c);
  // Times Stats was called.
  int stats_calls();
  // The window the last Stats call asked for.
  absl::Duration last_window();

 private:
  Clock* const clock_;
  absl::Mutex mu_;
  std::map<int64_t, RequestStats> by_revision_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, int64_t>, RequestStats> by_app_
      ABSL_GUARDED_BY(mu_);
  double concurrency_ ABSL_GUARDED_BY(mu_) = 0;
  int stats_calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration last_window_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal::testing
