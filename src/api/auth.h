#pragma once

// Who calls the API and what they may do (docs/auth.md): a Principal (a
// token's name and its role bindings), the rule table (which role each verb
// on each resource needs) and the checks the gRPC layer makes before a call
// reaches TidalService. A Kubernetes RBAC subset: three roles, each a
// superset of the one before, bound per namespace or cluster-wide ("*").
// Pure and thread-compatible; no I/O.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tidal::auth {

enum class Role { kNone = 0, kViewer = 1, kDeveloper = 2, kAdmin = 3 };

// "viewer" | "developer" | "admin"; InvalidArgument otherwise.
absl::StatusOr<Role> ParseRole(const std::string& s);
const char* RoleName(Role role);

// The namespace of a cluster-wide binding.
constexpr const char* kAllNamespaces = "*";

struct Binding {
  std::string ns;  // kAllNamespaces: every namespace and the cluster
  Role role = Role::kNone;
};

struct Principal {
  std::string name;      // the token's name ("anonymous" with --auth=none)
  std::string token_id;  // empty with --auth=none
  std::vector<Binding> bindings;
  absl::Time expires = absl::InfiniteFuture();

  // Everything allowed (--auth=none, and in-process callers).
  static Principal Unrestricted();

  // The strongest role this principal holds in `ns` (cluster-wide bindings
  // count in every namespace).
  Role RoleIn(const std::string& ns) const;
  // The strongest cluster-wide role.
  Role ClusterRole() const;
  // "admin in team-a, viewer in team-b" (for errors and whoami).
  std::string Describe() const;
};

// Whether a resource is namespaced (apps, instances, ...) or the cluster's
// own (nodes).
enum class Scope { kNamespaced, kCluster, kAnyAuthenticated };

// The role `verb` on `resource` needs, and its scope. NotFound for a verb or
// resource Tidal does not have (can-i answers "no" with the reason).
struct Rule {
  Role role = Role::kNone;
  Scope scope = Scope::kNamespaced;
};
absl::StatusOr<Rule> RuleFor(const std::string& verb,
                             const std::string& resource);

// kubectl's verbs as Tidal's: create/update/patch -> apply.
std::string CanonicalVerb(const std::string& verb);

// OK, or PermissionDenied naming the caller, the verb, the resource and the
// namespace. `ns` is ignored for cluster-scoped resources.
absl::Status Authorize(const Principal& p, const std::string& verb,
                       const std::string& resource, const std::string& ns);

// Whether `p` may `verb` `resource` in `ns` (Authorize without the message).
bool Allowed(const Principal& p, const std::string& verb,
             const std::string& resource, const std::string& ns);

// The rule table, for docs and `tidalctl auth can-i --list`: one row per
// (resource, verb).
struct RuleRow {
  std::string resource;
  std::string verb;
  Rule rule;
};
const std::vector<RuleRow>& Rules();

}  // namespace tidal::auth
