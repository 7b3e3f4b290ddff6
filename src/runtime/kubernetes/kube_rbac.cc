#include "runtime/kubernetes/kube_rbac.h"

#include <algorithm>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace tidal::kube {

RbacNeed RbacNeedOf(std::string_view method, std::string_view target) {
  RbacNeed need;
  std::string_view path = target;
  std::string_view query;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  std::vector<absl::string_view> segs = absl::StrSplit(
      absl::string_view(path.data(), path.size()), '/', absl::SkipEmpty());
  // api/v1/namespaces/NS/... or apis/GROUP/VERSION/namespaces/NS/...
  size_t at = 0;
  if (segs.size() >= 2 && segs[0] == "api") {
    at = 2;
  } else if (segs.size() >= 3 && segs[0] == "apis") {
    need.api_group = std::string(segs[1]);
    at = 3;
  } else {
    return RbacNeed{};
  }
  if (segs.size() < at + 3 || segs[at] != "namespaces") return RbacNeed{};
  need.resource = std::string(segs[at + 2]);
  const bool named = segs.size() >= at + 4;
  if (segs.size() >= at + 5) {
    need.resource += "/" + std::string(segs[at + 4]);
  }
  bool watch = false;
  for (absl::string_view kv :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&',
                      absl::SkipEmpty())) {
    if (kv == "watch=true" || kv == "watch=1") watch = true;
  }
  if (method == "GET") {
    need.verb = named ? "get" : (watch ? "watch" : "list");
  } else if (method == "PATCH") {
    need.verb = "patch";
  } else if (method == "PUT") {
    need.verb = "update";
  } else if (method == "DELETE") {
    need.verb = named ? "delete" : "deletecollection";
  } else if (method == "POST") {
    need.verb = "create";
  } else {
    need.verb = std::string(method);
  }
  return need;
}

bool RbacAllows(const RbacNeed& need) {
  for (const RbacRule& r : RequiredRbacRules()) {
    if (r.api_group == need.api_group && r.resource == need.resource) {
      return std::find(r.verbs.begin(), r.verbs.end(), need.verb) !=
             r.verbs.end();
    }
  }
  return false;
}

}  // namespace tidal::kube
