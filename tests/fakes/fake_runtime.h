#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "runtime/runtime.h"

namespace tidal::testing {

// An in-memory Runtime: instances are records, not processes (ids are
// "<app>-<n>", or InstanceRequest::id when set). Tests make them
// ready, crash or vanish by hand (or set auto_ready), and read what the code
// under test asked for. Thread-safe; the listener is called without the lock.
class FakeRuntime : public Runtime {
 public:
  explicit FakeRuntime(bool auto_ready = false) : auto_ready_(auto_ready) {}

  absl::StatusOr<tidal::v1::Instance> Start(
      const InstanceRequest& req) override;
  absl::Status Stop(const std::string& instance_id,
                    absl::Duration grace) override;
  std::vector<tidal::v1::Instance> List(const std::string& ns = "",
                                        const std::string& app = "") override;
  void SetListener(Listener listener) override;
  // The figures set with SetUsage, for instances that still exist.
  std::vector<InstanceUsage> Usage(const std::string& ns = "",
                                   const std::string& app = "") override;
  absl::Status Adopt() override { return absl::OkStatus(); }
  // Streams what AppendLog wrote for the instance (following: as it is
  // appended); NotFound for an instance nothing was written for.
  absl::StatusOr<std::unique_ptr<LogStream>> OpenLogs(
      const std::string& instance_id, const LogOptions& options) override;
  // Instances that were stopped and removed and have a log (AppendLog),
  // in the order they stopped.
  std::vector<StoppedInstance> StoppedInstances(
      const std::string& ns = "", const std::string& app = "") override;
  void Shutdown(bool stop_instances) override {}

  // Test controls.
  void SetReady(const std::string& id, bool ready);
  void SetAllReady();
  // Sets the phase and message (e.g. CrashLoopBackOff) and marks it not ready.
  void SetPhase(const std::string& id, const std::string& phase,
                const std::string& message);
  // Changes an instance as the runtime would (e.g. restarts, start_time,
  // ready_time) and notifies the listener.
  void Update(const std::string& id,
              const std::function<void(tidal::v1::Instance*)>& change);
  // Appends to an instance's output (the instance need not exist: a log may
  // outlive its instance).
  void AppendLog(const std::string& id, const std::string& data);
  // Reading the instance's log fails with `why` after what was written (as
  // another node's log does when that node stops answering).
  void BreakLog(const std::string& id, absl::Status why);
  // Sets what Usage reports for an instance (cpu_seconds is cumulative).
  void SetUsage(const std::string& id, double cpu_seconds, int64_t memory_bytes,
                absl::Time sampled_at);
  // Times Usage was called.
  int usage_calls() {
    absl::MutexLock l(&mu_);
    return usage_calls_;
  }
  // Finishes pending stops (Terminating instances disappear).
  void FinishStops();
  // When set, Stop removes the instance at once.
  void set_instant_stop(bool v) {
    absl::MutexLock l(&mu_);
    instant_stop_ = v;
  }
  void set_fail_starts(bool v) {
    set_start_error(
        v ? absl::UnavailableError("fake runtime refuses to start instances")
          : absl::OkStatus());
  }
  // Every Start fails with this (OK: starts succeed).
  void set_start_error(absl::Status s) {
    absl::MutexLock l(&mu_);
    start_error_ = std::move(s);
  }
  int starts() {
    absl::MutexLock l(&mu_);
    return starts_;
  }
  int stops() {
    absl::MutexLock l(&mu_);
    return stops_;
  }

 private:
  void Notify(const InstanceChange& change);

  const bool auto_ready_;
  absl::Mutex mu_;
  std::map<std::string, tidal::v1::Instance> instances_ ABSL_GUARDED_BY(mu_);
  Listener listener_ ABSL_GUARDED_BY(mu_);
  bool instant_stop_ ABSL_GUARDED_BY(mu_) = true;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
  int starts_ ABSL_GUARDED_BY(mu_) = 0;
  int stops_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, InstanceUsage> usage_ ABSL_GUARDED_BY(mu_);
  // Each instance's output; shared with its open streams.
  struct Log;
  std::map<std::string, std::shared_ptr<Log>> logs_ ABSL_GUARDED_BY(mu_);
  int usage_calls_ ABSL_GUARDED_BY(mu_) = 0;
  // (namespace, app, id) of each instance stopped and removed.
  std::vector<std::tuple<std::string, std::string, std::string>> stopped_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tidal::testing
