#pragma once

// Deployer: the rollout state machine. For one app it decides which
// revisions should run and how many instances each gets (the scaler's total
// split by the current step), the traffic weights, and when a step advances,
// completes or fails (readiness, minReadySeconds, analysis of the new
// revision's own metrics, pauses, webhooks, the progress deadline). Its
// state (RolloutState) lives in the store under keys::RolloutKey and is
// written with CAS before the reconciler acts on a plan, so a restart of
// tidald resumes from the same step. Deterministic over the injected Clock,
// MetricsSource and WebhookSender. Thread-safe for different apps; one app
// is planned by one caller at a time (the controller's work queue).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "deployer/outbox.h"
#include "deployer/revisions.h"
#include "deployer/transitions.h"
#include "deployer/webhooks.h"
#include "scaler/metrics_source.h"
#include "store/store.h"
#include "tidal/v1/app.pb.h"

namespace tidal::deployer {

// How many instances of one revision should run.
struct RevisionTarget {
  int64_t revision = 0;
  std::string hash;
  tidal::v1::Template tmpl;
  int32_t target = 0;
};

// What the reconciler should make true now.
struct DeployPlan {
  RevisionTarget stable;
  bool has_update = false;
  RevisionTarget update;
  // Instances of any other template (older or failed revisions) go; those
  // whose hash is listed here go at once, without waiting for capacity.
  std::vector<std::string> stop_now_hashes;
  int32_t max_surge = 0;
  int32_t max_unavailable = 0;
  absl::Duration min_ready;  // minReadySeconds
  // Traffic percent per revision; empty: by ready instance count.
  std::vector<std::pair<int64_t, int>> weights;
  tidal::v1::RolloutStatus status;
  std::vector<DeployEvent> events;
  absl::Duration requeue_after = absl::InfiniteDuration();
};

// True when the instance is ready and has been for `min_ready`.
bool Available(const tidal::v1::Instance& inst, absl::Duration min_ready,
               absl::Time now);

class Deployer {
 public:
  // `metrics` and `webhooks` may be null: no analysis / no webhooks.
  // `outbox` (optional, not owned): notifications go through the store
  // (committed with the rollout state, delivered after a crash too) instead
  // of WebhookSender::Notify's memory queue.
  Deployer(Store* store, Clock* clock, MetricsSource* metrics,
           WebhookSender* webhooks, NotificationOutbox* outbox = nullptr);

  // `total`: the scaler's target; `live`: the app's instances that are not
  // stopping. Writes the rollout state (CAS; Aborted on a conflict) and
  // revisions, and returns the plan.
  absl::StatusOr<DeployPlan> Plan(const tidal::v1::App& app, int32_t total,
                                  const std::vector<tidal::v1::Instance>& live);

  // The app is gone: drops its rollout state and revisions.
  absl::Status Forget(const std::string& ns, const std::string& name);

  RevisionHistory* history() { return &history_; }

  // Who plans from now on, in a highly available control plane ("node n2
  // (fencing token 7)", set when this node is elected): a rollout in
  // progress that another leader planned is resumed with the event
  // RolloutResumed. Empty (the default): not tracked.
  void SetPlanner(std::string planner) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::string Planner() ABSL_LOCKS_EXCLUDED(mu_);

  Store* const store_;
  Clock* const clock_;
  MetricsSource* const metrics_;
  WebhookSender* const webhooks_;
  NotificationOutbox* const outbox_;
  RevisionHistory history_;
  absl::Mutex mu_;
  std::string planner_ ABSL_GUARDED_BY(mu_);
};

// Reads an app's rollout state; `version` 0 when there is none yet.
absl::StatusOr<tidal::v1::RolloutState> LoadRolloutState(
    Store* store, const std::string& ns, const std::string& name,
    int64_t* version);

}  // namespace tidal::deployer
