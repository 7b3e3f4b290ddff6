#pragma once

// RolloutControl: the deployer's side of the API (tidalctl rollout ...,
// get revisions). The API service forwards these calls to it; tidald wires
// the deployer in. Thread-safe.

#include "absl/status/statusor.h"
#include "tidal/v1/api.pb.h"

namespace tidal {

class RolloutControl {
 public:
  virtual ~RolloutControl() = default;
  // Acts on the app's rollout (pause, resume, promote, abort, undo, retry,
  // restart, or status) and returns the app with its rollout status.
  virtual absl::StatusOr<v1::App> Rollout(const v1::RolloutRequest& req) = 0;
  virtual absl::StatusOr<v1::ListRevisionsResponse> ListRevisions(
      const v1::ListRevisionsRequest& req) = 0;
};

}  // namespace tidal
