#pragma once

// RouteSink: the gateway's seam towards the app reconciler — which instances
// receive traffic, and draining before an instance is stopped.
// GatewayRoutes: the RouteSink over the gateway's route table. Publishes
// each app's ready instances as its route (grouped by revision, weighted by
// the rollout's split) and drains instances before they are stopped: the
// instance leaves the route at once, and `stop` runs when its in-flight
// requests are done or the grace period (measured on the injected Clock)
// ends.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "gateway/gateway.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

// The order in which a scale-down stops an app's instances: not ready first,
// then the most restarted, then the newest, then by id (so that every node
// agrees). A route lists its ready instances in the reverse order, which is
// the order the gateway fills them in under a concurrency limit: the
// instances a scale-down stops first are the ones that go idle first
// (docs/gateway.md, "Balancing").
bool StopsBefore(const tidal::v1::Instance& a, const tidal::v1::Instance& b);

// Implementations are thread-safe.
class RouteSink {
 public:
  virtual ~RouteSink() = default;
  // `serving` lists the live instances; the sink routes to the ready ones.
  virtual void UpdateRoute(const tidal::v1::App& app,
                           const std::vector<tidal::v1::Instance>& serving) = 0;
  virtual void RemoveRoute(const std::string& ns, const std::string& name) = 0;
  // Takes the instance out of the route, waits (asynchronously) until its
  // in-flight requests finish or `grace` passes, then calls `stop`.
  virtual void Drain(const tidal::v1::Instance& instance, absl::Duration grace,
                     std::function<void()> stop) = 0;
  // True while the instance drains (it counts as already stopped).
  virtual bool IsDraining(const std::string& instance_id) = 0;
  // Upgraded connections (WebSocket) open to the instance: a scale-down
  // leaves such instances running (docs/gateway.md, "Protocols").
  virtual int Tunnels(const std::string& instance_id) { return 0; }
  // Traffic percent per revision while a rollout splits it (empty: by ready
  // instances).
  virtual void SetWeights(const std::string& ns, const std::string& name,
                          std::vector<std::pair<int64_t, int>> weights) {}
};

namespace gateway {

// What GatewayRoutes drives: the gateway's route table and its in-flight
// counts (Gateway in production, a recording fake in tests). Thread-safe.
class RouteTarget {
 public:
  virtual ~RouteTarget() = default;
  virtual void SetRoute(const Route& route) = 0;
  virtual void RemoveRoute(const std::string& ns, const std::string& app) = 0;
  virtual int InFlight(const std::string& instance_id) const = 0;
  virtual int Tunnels(const std::string& instance_id) const { return 0; }
  // At the end of a drain: the instance's upgraded connections are closed
  // (WebSocket: 1001 Going Away).
  virtual void CloseTunnels(const std::string& instance_id) {}
};

// Thread-safe. A drainer thread runs from construction to destruction; the
// destructor stops every instance still draining at once.
class GatewayRoutes : public RouteSink {
 public:
  // Over the gateway (not owned; it outlives this object).
  GatewayRoutes(Gateway* gw, Clock* clock);
  // Over any target (not owned).
  GatewayRoutes(RouteTarget* target, Clock* clock);
  ~GatewayRoutes() override;
  GatewayRoutes(const GatewayRoutes&) = delete;
  GatewayRoutes& operator=(const GatewayRoutes&) = delete;

  void UpdateRoute(const tidal::v1::App& app,
                   const std::vector<tidal::v1::Instance>& serving) override;
  void RemoveRoute(const std::string& ns, const std::string& name) override;
  void Drain(const tidal::v1::Instance& instance, absl::Duration grace,
             std::function<void()> stop) override;
  bool IsDraining(const std::string& instance_id) override;
  int Tunnels(const std::string& instance_id) override;

  // Traffic weight (percent) of each revision while a rollout splits it;
  // revisions not listed share what is left. Empty: by ready instances.
  void SetWeights(const std::string& ns, const std::string& name,
                  std::vector<std::pair<int64_t, int>> weights) override;

 private:
  struct AppEntry {
    int concurrency = 0;
    absl::Duration timeout = absl::ZeroDuration();
    absl::Duration response_start_timeout = absl::ZeroDuration();
    absl::Duration idle_timeout = absl::ZeroDuration();
    bool h2 = false;
    std::vector<tidal::v1::Instance> serving;
    std::vector<std::pair<int64_t, int>> weights;
    // The app's stable and update revisions (status.rollout; 0: none).
    int64_t stable_revision = 0;
    int64_t update_revision = 0;
  };
  struct Pending {
    std::string instance_id;
    absl::Time deadline;  // on clock_
    std::function<void()> stop;
  };
  void PublishLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainLoop();

  // Constant after construction.
  std::unique_ptr<RouteTarget> own_target_;  // the Gateway adapter, if any
  RouteTarget* const target_;
  Clock* const clock_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, AppEntry> apps_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> draining_ ABSL_GUARDED_BY(mu_);
  std::vector<Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread drainer_;
};

}  // namespace gateway
}  // namespace tidal
