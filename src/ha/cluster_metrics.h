#pragma once

// ClusterMetrics: the leader's MetricsSource in highly available mode: this
// node's gateway merged with the metrics reports of the other live nodes
// (keys::Metrics(node), tidal.v1.TrafficReport, written by each node's
// MetricsPublisher about once a second).
//
//  Samples: per second, the local gateway's sample plus every other live
//    node's; a second is returned only once every live node has reported
//    through it, so a node whose reports are late holds the samples back
//    (the scaler sees them a little later, never a partial sum).
//  Incomplete: true while a live node has not reported for `stale_after`
//    (3 s): its figures are missing, and the scaler does not scale down on
//    what it sees (MetricsSource::Incomplete).
//  Stats: response classes, latency histograms and concurrency summed over
//    the reports of every live node, this one included (its own report, up
//    to one report old); the local gateway's Stats when no report has the
//    app.
//  InFlight (InFlightView, for StoreRouteSink's drains): the other live
//    nodes' in-flight requests to an instance once each has reported a
//    routes version at or after the one asked.
//
// Thread-safe. Start() runs a list+watch thread until Stop().

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gateway/request_metrics.h"
#include "ha/in_flight_view.h"
#include "scaler/metrics_source.h"
#include "store/store.h"

namespace tidal::ha {

class ClusterMetrics : public MetricsSource, public InFlightView {
 public:
  using LiveNodesFn = std::function<std::vector<std::string>()>;
  struct Options {
    std::string node;                // this node's name (required)
    Clock* clock = nullptr;          // (required)
    MetricsSource* local = nullptr;  // this node's gateway (null: none)
    // Live nodes (this one may be listed); pass the node liveness in
    // production. Null: the nodes whose report arrived within the last 30 s
    // (a dead node's report stays in the store).
    LiveNodesFn live_nodes;
    // A live node without a report for this long makes the figures
    // incomplete.
    absl::Duration stale_after = absl::Seconds(3);
    absl::Duration retry = absl::Milliseconds(200);  // after store errors
  };

  ClusterMetrics(Store* store, Options options);
  ~ClusterMetrics() override;
  ClusterMetrics(const ClusterMetrics&) = delete;
  ClusterMetrics& operator=(const ClusterMetrics&) = delete;

  void Start();
  void Stop();
  bool synced() const;  // the reports have been listed

  // MetricsSource.
  std::vector<MetricSample> Samples(const std::string& ns,
                                    const std::string& app, int64_t revision,
                                    absl::Time after) override;
  RequestStats Stats(const std::string& ns, const std::string& app,
                     int64_t revision, absl::Duration window) override;
  bool Incomplete(const std::string& ns, const std::string& app) override;

  // InFlightView: the other live nodes.
  int InFlight(const std::string& instance_id, int64_t routes_version) override;

  // Live nodes whose figures are missing now (for logs and status).
  std::vector<std::string> MissingNodes();

 private:
  struct Totals {
    int64_t requests = 0;
    std::array<int64_t, 5> classes{};
    std::array<uint64_t, gateway::kBuckets> buckets{};
    double area = 0;
  };
  struct Entry {
    int64_t first_second = 0;  // first second any report covered for it
    std::map<int64_t, MetricSample> seconds;            // non-zero seconds
    std::deque<std::pair<absl::Time, Totals>> history;  // on clock_
    absl::Time touched;
  };
  struct Node {
    int64_t sequence = -1;
    absl::Time sent;  // the report's own time (node's clock)
    int64_t through = 0;
    absl::Time received;  // on clock_
    int64_t routes_version = 0;
    std::map<std::string, int> in_flight;
    absl::flat_hash_map<std::string, Entry> entries;  // by EntryKey
  };
  static std::string EntryKey(const std::string& ns, const std::string& app,
                              int64_t revision);
  void Apply(const std::string& value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Live nodes other than this one.
  std::vector<std::string> LiveOthers();
  bool Wait(absl::Duration d);
  void Loop();

  // Constant after construction.
  Store* const store_;
  const Options options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);
  absl::Time started_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Watch* watch_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace tidal::ha
