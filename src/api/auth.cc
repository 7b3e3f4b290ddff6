#include "api/auth.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tidal::auth {

absl::StatusOr<Role> ParseRole(const std::string& s) {
  if (s == "viewer") return Role::kViewer;
  if (s == "developer") return Role::kDeveloper;
  if (s == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(absl::StrCat(
      "role: \"", s, "\" is not a role (viewer, developer or admin)"));
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kDeveloper:
      return "developer";
    case Role::kAdmin:
      return "admin";
    case Role::kNone:
      break;
  }
  return "none";
}

Principal Principal::Unrestricted() {
  Principal p;
  p.name = "anonymous";
  p.bindings.push_back({kAllNamespaces, Role::kAdmin});
  return p;
}

Role Principal::RoleIn(const std::string& ns) const {
  Role best = Role::kNone;
  for (const Binding& b : bindings) {
    if (b.ns == ns || b.ns == kAllNamespaces) best = std::max(best, b.role);
  }
  return best;
}

Role Principal::ClusterRole() const {
  Role best = Role::kNone;
  for (const Binding& b : bindings) {
    if (b.ns == kAllNamespaces) best = std::max(best, b.role);
  }
  return best;
}

std::string Principal::Describe() const {
  if (bindings.empty()) return "no role";
  return absl::StrJoin(bindings, ", ", [](std::string* out, const Binding& b) {
    absl::StrAppend(out, RoleName(b.role), " in ",
                    b.ns == kAllNamespaces ? "every namespace"
                                           : absl::StrCat("\"", b.ns, "\""));
  });
}

const std::vector<RuleRow>& Rules() {
  static const auto* rows = [] {
    auto* v = new std::vector<RuleRow>;
    auto add = [&](const char* resource, std::vector<const char*> verbs,
                   Role role, Scope scope = Scope::kNamespaced) {
      for (const char* verb : verbs)
        v->push_back({resource, verb, {role, scope}});
    };
    const Role kV = Role::kViewer, kD = Role::kDeveloper, kA = Role::kAdmin;
    add("apps", {"get", "list", "watch"}, kV);
    add("apps", {"apply", "delete", "scale", "rollout"}, kD);
    add("instances", {"get", "list"}, kV);
    add("logs", {"get"}, kV);
    add("events", {"list"}, kV);
    add("revisions", {"list"}, kV);
    add("metrics", {"get"}, kV);  // tidalctl top
    // Like Kubernetes' view role, viewers do not see secrets at all (their
    // values are never shown to anyone; their names and keys are).
    add("secrets", {"get", "list", "apply", "delete"}, kD);
    add("tokens", {"create", "list", "delete"}, kA);
    // The control plane's own objects: any authenticated caller may see the
    // leader and the nodes (they name no namespace's objects); removing a
    // node takes a cluster-wide admin.
    add("nodes", {"get", "list"}, kV, Scope::kAnyAuthenticated);
    add("nodes", {"delete"}, kA, Scope::kCluster);
    return v;
  }();
  return *rows;
}

std::string CanonicalVerb(const std::string& verb) {
  if (verb == "create" || verb == "update" || verb == "patch") {
    return "apply";
  }
  return verb;
}

absl::StatusOr<Rule> RuleFor(const std::string& verb,
                             const std::string& resource) {
  bool known_resource = false;
  for (const RuleRow& row : Rules()) {
    if (row.resource != resource) continue;
    known_resource = true;
    if (row.verb == verb) return row.rule;
  }
  // `create tokens` is not `apply tokens`: look the verb up as typed first.
  const std::string canonical = CanonicalVerb(verb);
  if (canonical != verb) return RuleFor(canonical, resource);
  if (!known_resource) {
    return absl::NotFoundError(absl::StrCat(
        "the server doesn't have a resource type \"", resource, "\""));
  }
  return absl::NotFoundError(
      absl::StrCat("there is no verb \"", verb, "\" on ", resource));
}

namespace {

bool Holds(const Principal& p, const Rule& rule, const std::string& ns) {
  switch (rule.scope) {
    case Scope::kAnyAuthenticated:
      return !p.bindings.empty();
    case Scope::kCluster:
      return p.ClusterRole() >= rule.role;
    case Scope::kNamespaced:
      return p.RoleIn(ns) >= rule.role;
  }
  return false;
}

}  // namespace

bool Allowed(const Principal& p, const std::string& verb,
             const std::string& resource, const std::string& ns) {
  auto rule = RuleFor(verb, resource);
  return rule.ok() && Holds(p, *rule, ns);
}

absl::Status Authorize(const Principal& p, const std::string& verb,
                       const std::string& resource, const std::string& ns) {
  auto rule = RuleFor(verb, resource);
  if (!rule.ok()) return absl::PermissionDeniedError(rule.status().message());
  if (Holds(p, *rule, ns)) return absl::OkStatus();
  const std::string where = rule->scope == Scope::kNamespaced
                                ? absl::StrCat(" in namespace \"", ns, "\"")
                                : std::string(" (cluster-wide)");
  return absl::PermissionDeniedError(absl::StrCat(
      "token \"", p.name, "\" (", p.Describe(), ") cannot ", verb, " ",
      resource, where, ": it needs the ", RoleName(rule->role), " role",
      rule->scope == Scope::kNamespaced ? " there" : " in every namespace"));
}

}  // namespace tidal::auth
