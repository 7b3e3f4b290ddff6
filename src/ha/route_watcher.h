#pragma once

// RouteWatcher: applies the routes the leader publishes in the store
// (keys::Route, tidal.v1.RouteRecord) to this node's gateway, so every
// gateway, leader or not, routes to the same instances. Lists and watches
// /routes/; re-lists when the watch falls behind (OutOfRange) or fails, and
// retries with a backoff while the store is unreachable (the gateway keeps
// the routes it has meanwhile). It also says which routes this gateway has
// applied and what it has in flight per instance, for drains
// (InFlightView) and the node's metrics report.
//
// Thread-safe. Start() runs a thread until Stop() (or the destructor).

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/route_sink.h"
#include "ha/in_flight_view.h"
#include "store/store.h"

namespace tidal::ha {

class RouteWatcher : public InFlightView {
 public:
  struct Options {
    // Longest wait for watch events (how soon Stop is noticed).
    absl::Duration poll = absl::Milliseconds(200);
    // Backoff after a store error, doubling up to the maximum.
    absl::Duration retry_min = absl::Milliseconds(100);
    absl::Duration retry_max = absl::Seconds(5);
  };
  // What this gateway routes: applied routes version and in-flight requests
  // per instance it routes (or routed until recently) that has any.
  struct Routing {
    int64_t version = 0;
    std::map<std::string, int> in_flight;
  };

  // Over the node's gateway (not owned; outlives this object).
  RouteWatcher(Store* store, gateway::Gateway* gw, Options options);
  // Over any route target (tests).
  RouteWatcher(Store* store, gateway::RouteTarget* target, Options options);
  ~RouteWatcher() override;
  RouteWatcher(const RouteWatcher&) = delete;
  RouteWatcher& operator=(const RouteWatcher&) = delete;

  void Start();
  void Stop();

  // True once the routes have been listed and applied.
  bool synced() const;
  // The store revision through which routes have been applied.
  int64_t applied_version() const;
  // Read in one step: routes applied after it are not reflected.
  Routing Report();

  // InFlightView: this gateway only.
  int InFlight(const std::string& instance_id, int64_t routes_version) override;

 private:
  void Loop();
  // Waits `d` (real time) unless stopping; false when stopping.
  bool Backoff(absl::Duration* d);
  void ApplyPut(const KeyValue& kv) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyDelete(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  Store* const store_;
  std::unique_ptr<gateway::RouteTarget> own_target_;
  gateway::RouteTarget* const target_;
  const Options options_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  // Applied routes: key -> (ns, app) and the instance ids in them.
  struct Applied {
    std::string ns, app;
    std::set<std::string> ids;
  };
  absl::flat_hash_map<std::string, Applied> routes_ ABSL_GUARDED_BY(mu_);
  // Instances taken out of a route whose requests may still be in flight.
  std::set<std::string> leaving_ ABSL_GUARDED_BY(mu_);
  Watch* watch_ ABSL_GUARDED_BY(mu_) = nullptr;  // to cancel on Stop
  std::thread thread_;
};

}  // namespace tidal::ha
