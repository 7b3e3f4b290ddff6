#pragma once

// A recording gateway route table for the ha tests: the last route of each
// app, and in-flight counts the test sets. Thread-safe.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gateway/route_sink.h"

namespace tidal::ha::fakes {

class RecordingTarget : public gateway::RouteTarget {
 public:
  void SetRoute(const gateway::Route& route) override {
    absl::MutexLock l(&mu_);
    routes_[route.ns + "/" + route.app] = route;
  }
  void RemoveRoute(const std::string& ns, const std::string& app) override {
    absl::MutexLock l(&mu_);
    routes_.erase(ns + "/" + app);
  }
  int InFlight(const std::string& id) const override {
    absl::MutexLock l(&mu_);
    auto it = in_flight_.find(id);
    return it == in_flight_.end() ? 0 : it->second;
  }
  void set_in_flight(const std::string& id, int n) {
    absl::MutexLock l(&mu_);
    in_flight_[id] = n;
  }
  std::optional<gateway::Route> route(const std::string& key) {
    absl::MutexLock l(&mu_);
    auto it = routes_.find(key);
    if (it == routes_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, gateway::Route> routes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal::ha::fakes
