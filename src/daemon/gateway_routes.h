#pragma once

// GatewayRoutes: the controller's RouteSink over the gateway. Publishes each
// app's ready instances as its route (grouped by revision, weighted by the
// rollout's split) and drains instances before they are stopped: the
// instance leaves the route at once, and `stop` runs when its in-flight
// requests are done or the grace period ends. Thread-safe.

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "controller/app_reconciler.h"
#include "gateway/gateway.h"

namespace tidal {

class GatewayRoutes : public RouteSink {
 public:
  explicit GatewayRoutes(gateway::Gateway* gw);
  ~GatewayRoutes() override;

  void UpdateRoute(const tidal::v1::App& app,
                   const std::vector<tidal::v1::Instance>& serving) override;
  void RemoveRoute(const std::string& ns, const std::string& name) override;
  void Drain(const tidal::v1::Instance& instance, absl::Duration grace,
             std::function<void()> stop) override;
  bool IsDraining(const std::string& instance_id) override;

  // Traffic weight (percent) of each revision while a rollout splits it;
  // revisions not listed share what is left. Empty: by ready instances.
  void SetWeights(const std::string& ns, const std::string& name,
                  std::vector<std::pair<int64_t, int>> weights) override;

 private:
  struct AppEntry {
    int concurrency = 0;
    std::vector<tidal::v1::Instance> serving;
    std::vector<std::pair<int64_t, int>> weights;
  };
  struct Pending {
    std::string instance_id;
    absl::Time deadline;
    std::function<void()> stop;
  };
  void PublishLocked(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DrainLoop();

  gateway::Gateway* const gw_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, AppEntry> apps_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> draining_ ABSL_GUARDED_BY(mu_);
  std::vector<Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread drainer_;
};

}  // namespace tidal
