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
#include "gateway/route_sink.h"
#include "runtime/runtime.h"
#include "scaler/replica_planner.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

class AppReconciler {
 public:
  struct Options {
    // Returns the app's URL for status.url ("" for none).
    std::function<std::string(const std::string& ns, const std::string& name)>
        url;
    // The most instances one app runs, whatever the scaler wants (tidald
    // --max-instances-per-app, bounded by its port range); 0: no cap.
    int32_t max_instances = 0;
    // Optional seams (not owned; they outlive the reconciler).
    // The scaler: the total number of instances (null: spec.replicas or
    // minReplicas).
    ReplicaPlanner* planner = nullptr;
    // The gateway: routes and draining (null: instances stop at once).
    RouteSink* routes = nullptr;
    // The deployer that splits the total between revisions (null: one over
    // the same store and clock, without metrics or webhooks).
    deployer::Deployer* deployer = nullptr;
  };
  // What the caller should do after a successful reconcile.
  struct Result {
    absl::Duration requeue_after = absl::InfiniteDuration();
  };

  AppReconciler(Store* store, Runtime* runtime, EventRecorder* events,
                Clock* clock, Options options);

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
  ReplicaPlanner* const planner_;
  RouteSink* const routes_;
  deployer::Deployer own_deployer_;
  deployer::Deployer* const deployer_;
};

// Sets a condition, moving last_transition_time only when its status changes.
void SetCondition(tidal::v1::AppStatus* status, const std::string& type,
                  const std::string& cond_status, const std::string& reason,
                  const std::string& message, absl::Time now);

}  // namespace tidal
