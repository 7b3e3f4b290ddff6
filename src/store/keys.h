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

}  // namespace tidal::keys
