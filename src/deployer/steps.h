#pragma once

// Rollout steps: how many instances of the new revision each step of a
// release wants, with which traffic weight and pause. Pure functions over the
// spec and the scaler's current total, so the split follows the total when
// it changes mid-release. Thread-safe (no state).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tidal/v1/app.pb.h"

namespace tidal::deployer {

struct RolloutStep {
  int32_t new_target = 0;  // instances of the new revision at this step
  int weight = -1;         // percent of traffic to it; -1: by instance count
  absl::Duration pause;    // hold after the step is available
  bool manual = false;     // hold until `rollout promote`
  std::string kind;        // "batch" | "canary" (for status text)
};

// The steps of a release over `total` instances.
//  batch:  N = `batches` (or ceil(total / batchSize), default 1) steps; step
//          k wants k*floor(total/N) + min(k, total%N) new instances, so the
//          remainder goes to the earliest batches (10 in 4: 3, 3, 2, 2).
//  canary: one step per spec step (weight w: ceil(total*w/100) instances, at
//          least 1; replicas r: min(r, total)), then the rest in batches as
//          above. Pauses: a step's own pause; between batches batchInterval
//          or `pause: manual`; never after the last step.
std::vector<RolloutStep> BuildSteps(const tidal::v1::RolloutSpec& spec,
                                    int32_t total);

// maxSurge / maxUnavailable ("25%", "2", "" = 25%) against `total`, rounded
// as Kubernetes does: surge up, unavailable down. When both come out 0,
// unavailable becomes 1 so a release can make progress.
struct Capacity {
  int32_t max_surge = 0;
  int32_t max_unavailable = 0;
};
Capacity ResolveCapacity(const tidal::v1::RolloutSpec& spec, int32_t total);

// Parses "25%" or "3"; `round_up` for percentages. -1 when malformed.
int32_t IntOrPercent(const std::string& text, int32_t total, bool round_up);

}  // namespace tidal::deployer
