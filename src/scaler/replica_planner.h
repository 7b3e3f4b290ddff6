#pragma once

// ReplicaPlanner: the scaler's seam towards the app reconciler — the total
// number of instances an app should have now. MultiScaler implements it;
// without one, the reconciler keeps spec.replicas (or minReplicas).

#include <cstdint>
#include <string>
#include <vector>

#include "tidal/v1/app.pb.h"

namespace tidal {

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

}  // namespace tidal
