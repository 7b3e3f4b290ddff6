#pragma once

// ForwardingRuntime: a Runtime that passes every call to another one. Tests
// derive from it to record or alter the few calls they care about.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/runtime.h"

namespace tidal::testing {

class ForwardingRuntime : public Runtime {
 public:
  explicit ForwardingRuntime(Runtime* base) : base_(base) {}
  absl::StatusOr<v1::Instance> Start(const InstanceRequest& req) override {
    return base_->Start(req);
  }
  absl::Status Stop(const std::string& id, absl::Duration grace) override {
    return base_->Stop(id, grace);
  }
  std::vector<v1::Instance> List(const std::string& ns = "",
                                 const std::string& app = "") override {
    return base_->List(ns, app);
  }
  void SetListener(Listener listener) override {
    base_->SetListener(std::move(listener));
  }
  absl::Status Adopt() override { return base_->Adopt(); }
  absl::StatusOr<std::unique_ptr<LogStream>> OpenLogs(
      const std::string& id, const LogOptions& options) override {
    return base_->OpenLogs(id, options);
  }
  std::vector<StoppedInstance> StoppedInstances(
      const std::string& ns = "", const std::string& app = "") override {
    return base_->StoppedInstances(ns, app);
  }
  void Shutdown(bool stop_instances) override {
    base_->Shutdown(stop_instances);
  }

 private:
  Runtime* const base_;
};

}  // namespace tidal::testing
