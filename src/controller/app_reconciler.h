#pragma once

// AppReconciler: makes the instances of one App match its spec. The
// deployer decides how many instances of which revision (stable, update)
// should run and the traffic split; the reconciler starts and stops
// instances towards those targets within maxSurge / maxUnavailable. Level
// triggered and idempotent: each call reads the App from the store and the
// instances from the runtime, acts on the difference, and writes the status.
// It never depends on having seen earlier events, so a restart of tidald in
// the middle of anything is followed by a correct reconcile. Thread-safe for
// different keys; the work queue guarantees one key is never reconciled by
// two workers at once.

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/events.h"
#include "deployer/deployer.h"
#include "runtime/runtime.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

// The scaler's seam: the total number of instances an app should have now.
// Without one, the reconciler keeps spec.replicas (or minReplicas).
class ReplicaPlanner {
 public:
  virtual ~ReplicaPlanner() = default;
  struct Plan {
    int32_t replicas = 0;
    std::string
        reason;  // why it changed, for the event ("concurrency 95 over ...")
    tidal::v1::ScalingStatus status;
    bool has_status = false;
  };
  virtual Plan Desired(const tidal::v1::App& app,
                       const std::vector<tidal::v1::Instance>& instances) = 0;
  virtual void Forget(const std::string& ns, const std::string& name) {}
};

// The gateway's seam: which instances receive traffic, and draining before
// an instance is stopped.
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
  // Traffic percent per revision while a rollout splits it (empty: by ready
  // instances).
  virtual void SetWeights(const std::string& ns, const std::string& name,
                          std::vector<std::pair<int64_t, int>> weights) {}
};

class AppReconciler {
 public:
  struct Options {
    // Returns the app's URL for status.url ("" for none).
    std::function<std::string(const std::string& ns, const std::string& name)>
        url;
    // The most instances one app runs, whatever the scaler wants (tidald
    // --max-instances-per-app, bounded by its port range); 0: no cap.
    int32_t max_instances = 0;
  };
  // What the caller should do after a successful reconcile.
  struct Result {
    absl::Duration requeue_after = absl::InfiniteDuration();
  };

  AppReconciler(Store* store, Runtime* runtime, EventRecorder* events,
                Clock* clock, Options options);

  // Optional seams, set before the first Reconcile.
  void set_planner(ReplicaPlanner* planner) { planner_ = planner; }
  void set_route_sink(RouteSink* routes) { routes_ = routes; }
  // The deployer that splits the total between revisions (default: one over
  // the same store and clock, without metrics or webhooks).
  void set_deployer(deployer::Deployer* d) { deployer_ = d; }

  // key: "namespace/name". Errors are retried with backoff by the caller.
  absl::StatusOr<Result> Reconcile(const std::string& key);

 private:
  bool Live(const tidal::v1::Instance& inst);
  absl::Status StopInstance(const tidal::v1::Instance& inst,
                            absl::Duration grace);
  absl::StatusOr<Result> ReconcileDeleted(const std::string& ns,
                                          const std::string& name,
                                          const tidal::v1::App* app,
                                          int64_t version);

  // Constant after construction.
  Store* const store_;
  Runtime* const runtime_;
  EventRecorder* const events_;
  Clock* const clock_;
  const Options options_;
  ReplicaPlanner* planner_ = nullptr;
  RouteSink* routes_ = nullptr;
  deployer::Deployer own_deployer_;
  deployer::Deployer* deployer_;
};

// Sets a condition, moving last_transition_time only when its status changes.
void SetCondition(tidal::v1::AppStatus* status, const std::string& type,
                  const std::string& cond_status, const std::string& reason,
                  const std::string& message, absl::Time now);

}  // namespace tidal
