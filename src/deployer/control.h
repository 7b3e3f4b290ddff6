#pragma once

// DeployerControl: the deployer's side of `tidalctl rollout ...` and `get
// revisions` (the API forwards RolloutControl calls here). Actions are
// recorded in the app's RolloutState (pause, resume, promote, abort, retry)
// or as a spec change (undo, restart), each with CAS, and the app is then
// queued for a reconcile, which acts on them. Thread-safe.

#include <functional>
#include <string>

#include "api/rollout_control.h"
#include "api/spec.h"
#include "common/clock.h"
#include "deployer/revisions.h"
#include "store/store.h"

namespace tidal::deployer {

// `rollout restart` writes the time into this template annotation
// (spec::kRestartedAtAnnotation). Earlier versions wrote it as a template
// label, whose value (with ':') fails the label rule: a restart removes such
// a label.
using spec::kRestartedAtAnnotation;

class DeployerControl : public RolloutControl {
 public:
  // `on_change(key)` asks for a reconcile of "ns/name".
  DeployerControl(Store* store, Clock* clock,
                  std::function<void(const std::string&)> on_change);

  absl::StatusOr<v1::App> Rollout(const v1::RolloutRequest& req) override;
  absl::StatusOr<v1::ListRevisionsResponse> ListRevisions(
      const v1::ListRevisionsRequest& req) override;

 private:
  absl::Status ChangeState(const std::string& ns, const std::string& name,
                           const v1::RolloutRequest& req);
  absl::Status ChangeSpec(const std::string& ns, const std::string& name,
                          const v1::RolloutRequest& req);

  Store* const store_;
  Clock* const clock_;
  const std::function<void(const std::string&)> on_change_;
  RevisionHistory history_;
};

}  // namespace tidal::deployer
