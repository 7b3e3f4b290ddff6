#pragma once

// MetricsPublisher: every node's gateway traffic for the leader (highly
// available mode). About once a second (just after the gateway closes a
// second) it writes keys::Metrics(node) (tidal.v1.TrafficReport): per app
// and revision the complete one-second samples since its last successful
// report (plus a small overlap, so a leader that re-lists misses nothing),
// the cumulative response classes, latency histogram and concurrency
// integral (they sum across nodes: ClusterMetrics::Stats), and, from the
// node's RouteWatcher, the routes version the gateway has applied and its
// in-flight requests per instance (for the leader's drains). A failed write
// is covered by the next report.
//
// Thread-safe. Start() runs the report thread until Stop(); PublishOnce()
// writes one report now (tests with a fake clock call it directly).

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gateway/gateway.h"
#include "scaler/metrics_source.h"
#include "store/store.h"

namespace tidal::ha {

class RouteWatcher;

class MetricsPublisher {
 public:
  // The gateway's cumulative figures per app and revision
  // (gateway::Gateway::Traffic).
  using TrafficFn = std::function<std::vector<gateway::CumulativeTraffic>()>;
  struct Options {
    std::string node;                // this node's name (required)
    Clock* clock = nullptr;          // report times (required)
    MetricsSource* local = nullptr;  // the gateway's samples (required)
    TrafficFn traffic;               // the gateway's figures (required)
    RouteWatcher* routes = nullptr;  // routes applied, in-flight (optional)
    absl::Duration interval = absl::Seconds(1);
    // Reports fall this long after each whole interval (the gateway closes
    // each second at its boundary).
    absl::Duration offset = absl::Milliseconds(200);
    int resend_seconds = 2;  // overlap with the previous report
    // Every this many reports, every app's totals (else only changed ones).
    int full_every = 30;
  };

  MetricsPublisher(Store* store, Options options);
  ~MetricsPublisher();
  MetricsPublisher(const MetricsPublisher&) = delete;
  MetricsPublisher& operator=(const MetricsPublisher&) = delete;

  void Start();
  void Stop();
  absl::Status PublishOnce();

 private:
  void Loop();

  // Constant after construction.
  Store* const store_;
  const Options options_;

  absl::Mutex publish_mu_;  // one report at a time
  int64_t sequence_ ABSL_GUARDED_BY(publish_mu_) = 0;
  int64_t last_through_ ABSL_GUARDED_BY(publish_mu_) = 0;  // 0: none yet
  // Serialized totals last reported per app/revision.
  std::map<std::string, std::string> sent_ ABSL_GUARDED_BY(publish_mu_);

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace tidal::ha
