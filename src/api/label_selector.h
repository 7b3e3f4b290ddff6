#pragma once

// Kubernetes label selectors: "app=web,tier!=db,env in (prod,staging),
// zone notin (a),canary,!legacy". Requirements are ANDed.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tidal {

// A parsed selector. An empty selector matches everything. Immutable after
// Parse, so thread-safe.
class LabelSelector {
 public:
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist };
  struct Requirement {
    std::string key;
    Op op = Op::kExists;
    std::vector<std::string> values;
  };

  // InvalidArgument naming the problem and its position on bad syntax.
  static absl::StatusOr<LabelSelector> Parse(std::string_view text);

  bool Matches(const std::map<std::string, std::string>& labels) const;
  template <typename MapT>
  bool MatchesMap(const MapT& labels) const {
    return Matches(
        std::map<std::string, std::string>(labels.begin(), labels.end()));
  }
  bool empty() const { return requirements_.empty(); }
  const std::vector<Requirement>& requirements() const { return requirements_; }
  // The canonical text form.
  std::string ToString() const;

 private:
  std::vector<Requirement> requirements_;
};

}  // namespace tidal
