#pragma once

// The Kubernetes API permissions the Kubernetes runtime uses, and no more:
// the Role in deploy/kubernetes/ grants exactly these (a test compares them),
// and the runtime's tests check that every request it sends is one of them
// (RbacVerbOf).

#include <string>
#include <string_view>
#include <vector>

namespace tidal::kube {

struct RbacRule {
  std::string api_group;  // "" for the core group
  std::string resource;   // "deployments", "deployments/scale", "pods/log"
  std::vector<std::string> verbs;
};

// The rules, in the order the Role lists them.
inline const std::vector<RbacRule>& RequiredRbacRules() {
  static const auto* rules = new std::vector<RbacRule>{
      // A server-side apply that creates the object needs create as well
      // as patch.
      {"apps", "deployments", {"list", "create", "patch", "delete"}},
      {"apps", "deployments/scale", {"get", "update"}},
      {"", "pods", {"list", "watch", "delete"}},
      {"", "pods/log", {"get"}},
      {"", "services", {"list", "create", "patch", "delete"}},
      {"discovery.k8s.io", "endpointslices", {"list", "watch"}},
      // CPU and memory of the Pods (metrics-server), for metric: cpu|memory.
      {"metrics.k8s.io", "pods", {"list"}},
  };
  return *rules;
}

// The RBAC verb of one request (method and target as sent: path and query),
// and the rule it needs ("apps", "deployments/scale"). Empty verb for a
// target that is not a namespaced API path.
struct RbacNeed {
  std::string api_group;
  std::string resource;
  std::string verb;
};
RbacNeed RbacNeedOf(std::string_view method, std::string_view target);

// True when RequiredRbacRules() grants `need`.
bool RbacAllows(const RbacNeed& need);

}  // namespace tidal::kube
