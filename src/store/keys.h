#pragma once

// The key layout in the Store. Every object kind has its own prefix; namespaced
// objects are "/<kind>/<namespace>/<name>[/<sub>]".

#include <string>

#include "absl/strings/str_cat.h"

namespace tidal::keys {

inline std::string AppPrefix() { return "/apps/"; }
inline std::string AppPrefix(const std::string& ns) {
  return absl::StrCat("/apps/", ns, "/");
}
inline std::string App(const std::string& ns, const std::string& name) {
  return absl::StrCat("/apps/", ns, "/", name);
}

// Secrets (docs/secrets.md): a SealedSecret, its values encrypted.
inline std::string SecretPrefix() { return "/secrets/"; }
inline std::string SecretPrefix(const std::string& ns) {
  return absl::StrCat("/secrets/", ns, "/");
}
inline std::string Secret(const std::string& ns, const std::string& name) {
  return absl::StrCat("/secrets/", ns, "/", name);
}

inline std::string EventPrefix(const std::string& ns, const std::string& app) {
  return absl::StrCat("/events/", ns, "/", app, "/");
}
inline std::string Event(const std::string& ns, const std::string& app,
                         const std::string& id) {
  return absl::StrCat("/events/", ns, "/", app, "/", id);
}

inline std::string RevisionPrefix(const std::string& ns,
                                  const std::string& app) {
  return absl::StrCat("/revisions/", ns, "/", app, "/");
}

inline std::string RolloutKey(const std::string& ns, const std::string& app) {
  return absl::StrCat("/rollouts/", ns, "/", app);
}

inline std::string ScalerStateKey(const std::string& ns,
                                  const std::string& app) {
  return absl::StrCat("/scaler/", ns, "/", app);
}

// API tokens (docs/auth.md): the record by its id, and the id by its name
// (unique; both written in one transaction).
inline std::string TokenPrefix() { return "/tokens/"; }
inline std::string Token(const std::string& id) {
  return absl::StrCat("/tokens/", id);
}
inline std::string TokenName(const std::string& name) {
  return absl::StrCat("/tokennames/", name);
}

// Highly available mode (docs/ha.md, proto/tidal/v1/ha.proto).
inline std::string LeaderKey() { return "/tidal/leader"; }
// The keyspace's random id, written once (daemon/store_identity.h).
inline std::string StoreId() { return "/tidal/store-id"; }
inline std::string NodePrefix() { return "/nodes/"; }
inline std::string Node(const std::string& node) {
  return absl::StrCat("/nodes/", node);
}
inline std::string AssignmentPrefix() { return "/assign/"; }
inline std::string AssignmentPrefix(const std::string& node) {
  return absl::StrCat("/assign/", node, "/");
}
inline std::string Assignment(const std::string& node, const std::string& id) {
  return absl::StrCat("/assign/", node, "/", id);
}
// Instance status records, written by the node that runs the instance.
inline std::string InstancePrefix() { return "/instances/"; }
inline std::string InstancePrefix(const std::string& node) {
  return absl::StrCat("/instances/", node, "/");
}
inline std::string Instance(const std::string& node, const std::string& id) {
  return absl::StrCat("/instances/", node, "/", id);
}
// Traffic (proto/tidal/v1/traffic.proto).
inline std::string RoutePrefix() { return "/routes/"; }
inline std::string Route(const std::string& ns, const std::string& app) {
  return absl::StrCat("/routes/", ns, "/", app);
}
inline std::string DemandPrefix() { return "/demand/"; }
inline std::string MetricsPrefix() { return "/metrics/"; }
inline std::string Metrics(const std::string& node) {
  return absl::StrCat("/metrics/", node);
}

}  // namespace tidal::keys
