#pragma once

// JSON for the Kubernetes client and its emulator (Boost.JSON, compiled once
// in kube_json.cc). Include it from .cc files only: it pulls in Boost.JSON.

#include <boost/json.hpp>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tidal::kube {

namespace json = boost::json;

// Parses `text`; InvalidArgument with Boost.JSON's message when it is not
// JSON.
absl::StatusOr<json::value> ParseJson(std::string_view text);

// The value at a path of object keys ({"metadata", "name"}), or nullptr.
const json::value* Find(const json::value& v,
                        std::initializer_list<std::string_view> path);

// The string / integer at a path; `fallback` when absent or of another type.
std::string GetString(const json::value& v,
                      std::initializer_list<std::string_view> path,
                      std::string fallback = "");
int64_t GetInt(const json::value& v,
               std::initializer_list<std::string_view> path,
               int64_t fallback = 0);

}  // namespace tidal::kube
