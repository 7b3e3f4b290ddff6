#pragma once

// The Runtime: where instances run. The process runtime (default) runs each
// instance as a local child process; a Kubernetes runtime maps instances to
// pods. The runtime owns the instance lifecycle below the controller: it
// probes readiness and liveness, restarts crashed instances with backoff
// (CrashLoopBackOff), stops them gracefully and adopts them again after a
// restart of tidald. The controller decides how many exist and of which
// template; the runtime reports what is.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/log_stream.h"
#include "tidal/v1/app.pb.h"

namespace tidal {

// Instance.reason values a runtime sets on an instance that runs but, before
// it was first ready, gave up on getting ready (docs/rollouts.md, "Fail
// fast"); the deployer fails a release on them without waiting for its
// progress deadline.
//  ReadinessProbeFailed: the instance listens, but its readiness probe
//    answered "not ready" (an HTTP status outside 2xx/3xx) failureThreshold
//    times in a row, counted once per periodSeconds.
//  StartupTimeout: its port still refuses connections after the startup
//    bound (initialDelaySeconds + ProcessRuntimeOptions::startup_timeout).
inline constexpr char kReasonReadinessProbeFailed[] = "ReadinessProbeFailed";
inline constexpr char kReasonStartupTimeout[] = "StartupTimeout";

// Resolves template.env[].valueFrom.secretKeyRef (docs/secrets.md): the
// value of `key` in the Secret `name` of namespace `ns`. NotFound when the
// secret or the key does not exist; its message never holds a value.
using SecretResolver = std::function<absl::StatusOr<std::string>(
    const std::string& ns, const std::string& name, const std::string& key)>;

// What to start.
struct InstanceRequest {
  std::string namespace_;
  std::string app;
  std::string template_hash;
  int64_t revision = 0;
  tidal::v1::Template tmpl;
  // The instance's id. Empty: the runtime picks one ("<app>-<5 chars>"). Set
  // (highly available mode: the id of the node's Assignment), the instance
  // runs under it: letters, digits, '-', '_' and '.', starting with a letter
  // or digit, at most 128 characters (else InvalidArgument); AlreadyExists
  // when an instance with that id exists.
  std::string id;
};

// An instance whose output the runtime keeps after it stopped
// (Runtime::StoppedInstances).
struct StoppedInstance {
  std::string id;
  std::string namespace_;
  std::string app;
  bool operator==(const StoppedInstance& o) const {
    return id == o.id && namespace_ == o.namespace_ && app == o.app;
  }
};

// Something that changed about an instance; the runtime calls the listener
// for every state change (started, became ready, not ready, crashed,
// restarted, stopped) and for events worth showing to users.
struct InstanceChange {
  tidal::v1::Instance instance;  // its state after the change
  bool removed = false;          // the instance is gone (stopped for good)
  // Set when the change deserves an event ("BackOff", "Unhealthy",
  // "Started"...).
  std::string event_type;  // Normal | Warning, empty for no event
  std::string event_reason;
  std::string event_message;
};

// What one instance uses at one moment (Runtime::Usage). Callers turn two
// samples of the same instance into a CPU rate: (cpu_seconds delta) /
// (sampled_at delta).
struct InstanceUsage {
  std::string instance_id;
  // CPU time (user + system) used by the instance: every process of it (the
  // process runtime: its process group), including its children that have
  // exited and been waited for. It only grows while the instance runs; it
  // starts again from about zero when the instance's process is restarted.
  double cpu_seconds = 0;
  // Resident memory (RSS) of the instance's processes, summed.
  int64_t memory_bytes = 0;
  // When the figures were read.
  absl::Time sampled_at;
};

// Thread-safe.
class Runtime {
 public:
  using Listener = std::function<void(const InstanceChange&)>;
  virtual ~Runtime() = default;

  // Starts a new instance and returns it at once (phase Starting); readiness
  // is reported later through the listener.
  virtual absl::StatusOr<tidal::v1::Instance> Start(
      const InstanceRequest& req) = 0;

  // Stops an instance: SIGTERM, up to `grace`, then SIGKILL. Returns at once;
  // the instance shows phase Terminating until it is gone (listener: removed)
  // with every process it started. Callers pass the template's
  // terminationGracePeriodSeconds unless told otherwise (a delete with
  // --grace-period); a zero grace kills at once (--force). Calling it again
  // with a shorter grace brings the SIGKILL forward; a longer one changes
  // nothing.
  virtual absl::Status Stop(const std::string& instance_id,
                            absl::Duration grace) = 0;

  // The instances of one app (namespace_ and app set), or of all apps.
  virtual std::vector<tidal::v1::Instance> List(
      const std::string& namespace_ = "", const std::string& app = "") = 0;

  // Registers the one listener for instance changes. Call before Start/Adopt.
  virtual void SetListener(Listener listener) = 0;

  // Finds instances left running by a previous tidald and takes them over.
  // Called once at start-up, before the controller reconciles.
  virtual absl::Status Adopt() = 0;

  // CPU and memory usage of the running instances of one app (namespace_
  // and app set), or of all apps, read when asked (nothing is sampled in the
  // background). Instances without a running process (waiting to restart,
  // gone) are left out; a runtime without the figures returns nothing (the
  // default).
  virtual std::vector<InstanceUsage> Usage(const std::string& namespace_ = "",
                                           const std::string& app = "") {
    return {};
  }

  // A reader of an instance's output (stdout and stderr, log_stream.h), for
  // `tidalctl logs`: of a running instance, and of one that has stopped as
  // long as the runtime still has its output. NotFound when it has none.
  virtual absl::StatusOr<std::unique_ptr<LogStream>> OpenLogs(
      const std::string& instance_id, const LogOptions& options) = 0;

  // The instances of one app (namespace_ and app set), or of every app,
  // whose output of a run that has ended the runtime still keeps, oldest
  // first: what `tidalctl logs --previous` reads through OpenLogs with
  // LogOptions::previous. The process runtime: instances that have stopped
  // (crashed for good, replaced, scaled away); Kubernetes: Pods whose
  // container restarted (the kubelet keeps the previous container's log).
  // None by default.
  virtual std::vector<StoppedInstance> StoppedInstances(
      const std::string& namespace_ = "", const std::string& app = "") {
    return {};
  }

  // Stops probing and supervising; with stop_instances, stops every instance
  // too (else they keep running for the next tidald to adopt).
  virtual void Shutdown(bool stop_instances) = 0;
};

}  // namespace tidal
