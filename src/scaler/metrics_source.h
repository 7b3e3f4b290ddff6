#pragma once

// MetricsSource: the request metrics the scaler and the deployer's analysis
// read, produced by the gateway (in-process) or by a fake in tests.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace tidal {

// One second of one app's (or one revision's) traffic.
struct MetricSample {
  absl::Time time;         // start of the second
  double concurrency = 0;  // in-flight requests averaged over the second
  double requests = 0;     // requests that arrived in the second
};

// Aggregates over a window, for rollout analysis and `tidalctl top`.
struct RequestStats {
  int64_t requests = 0;
  int64_t responses_2xx = 0;
  int64_t responses_3xx = 0;
  int64_t responses_4xx = 0;
  int64_t responses_5xx = 0;  // includes gateway-made 502/503/504
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double rps = 0;
  double concurrency = 0;
};

// Thread-safe.
class MetricsSource {
 public:
  virtual ~MetricsSource() = default;
  // Complete one-second samples strictly after `after`, oldest first.
  // `revision` 0 means every revision of the app. Seconds without traffic are
  // included as zero samples (the source knows the app exists).
  virtual std::vector<MetricSample> Samples(const std::string& ns,
                                            const std::string& app,
                                            int64_t revision,
                                            absl::Time after) = 0;
  // Totals over the last `window` (revision 0: all revisions).
  virtual RequestStats Stats(const std::string& ns, const std::string& app,
                             int64_t revision, absl::Duration window) = 0;
  // True while a part of the app's figures is missing: a source that merges
  // several gateways (src/ha/cluster_metrics.h) lacks the reports of one that
  // should report. Samples then stops at the last second every part
  // reported, and the traffic after it is unknown: the scaler does not scale
  // down on it (as Knative does on missing metrics). A single gateway's
  // figures are never incomplete.
  virtual bool Incomplete(const std::string& ns, const std::string& app) {
    return false;
  }
};

}  // namespace tidal
