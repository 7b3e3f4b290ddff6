// TidalService: rollout control (Rollout, ListRevisions), served by the
// deployer through RolloutControl.
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "api/label_selector.h"
#include "api/limits.h"
#include "api/service.h"
#include "api/service_internal.h"
#include "api/spec.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "store/keys.h"

namespace tidal {

using namespace service_internal;  // NOLINT: the service's own helpers

absl::StatusOr<v1::App> TidalService::Rollout(const v1::RolloutRequest& req) {
  if (rollouts_ == nullptr) {
    return absl::FailedPreconditionError("this tidald runs no deployer");
  }
  return rollouts_->Rollout(req);
}

absl::StatusOr<v1::ListRevisionsResponse> TidalService::ListRevisions(
    const v1::ListRevisionsRequest& req) {
  if (rollouts_ == nullptr) {
    return absl::FailedPreconditionError("this tidald runs no deployer");
  }
  return rollouts_->ListRevisions(req);
}

}  // namespace tidal
